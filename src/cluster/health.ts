import type { Dispatcher } from 'undici';
import { Client, request } from '../undici.js';
import { after, cancel, type Timer } from '../clock.js';
import type { HealthCheckConfig } from '../config/types.js';
import type { Endpoint } from './endpoint.js';
import { HEALTH_CHECK_PATH, healthCheckRequest, SERVING, servingStatus } from './grpc-health.js';
import { protocolOptions } from './protocol.js';

const USER_AGENT = 'tandem-health-check';

/**
 * Each interval after the first is stretched or shrunk by up to this share so
 * that endpoints whose probes happen to line up drift apart again (Envoy's
 * `interval_jitter_percent`, here symmetric so the mean stays `interval`).
 */
const INTERVAL_JITTER = 0.1;

/** As the endpoint pools: stop reusing a socket this long before the server's keep-alive hint runs out. */
const KEEP_ALIVE_THRESHOLD_MS = 1000;

/** A longer body is cut off (its connection closed) rather than read: the status has decided already. */
const BODY_LIMIT = 64 * 1024;

/** `interval` ± INTERVAL_JITTER, uniformly. */
export function jitteredInterval(interval: number, random: () => number = Math.random): number {
  return interval * (1 - INTERVAL_JITTER + 2 * INTERVAL_JITTER * random());
}

interface Session {
  readonly endpoint: Endpoint;
  /** One keep-alive connection of its own, so probes neither queue behind nor take sockets from proxied traffic. */
  readonly client: Client;
  timer: Timer | undefined;
  inFlight: AbortController | undefined;
  successes: number;
  failures: number;
}

/**
 * Active health checks (CONTRACT §2, Envoy's HTTP and gRPC health checkers):
 * one probe per endpoint every `interval`, over the cluster's protocol. An
 * HTTP probe is a GET `path` and passes on a 2xx within `timeout`; a gRPC
 * probe is a grpc.health.v1.Health/Check call and passes on HTTP 200,
 * grpc-status 0 and SERVING within `timeout`. Anything else fails. Endpoints start healthy; `unhealthyThreshold`
 * consecutive failures mark one unhealthy, `healthyThreshold` consecutive
 * passes mark it healthy again. Unlike Envoy, which marks a host unhealthy at
 * once on an unexpected status, a non-2xx answer counts like any failure
 * towards `unhealthyThreshold`, so one bad answer from a busy app does not
 * take it out of rotation.
 */
export class HealthChecker {
  private readonly sessions: Session[] = [];
  private started = false;
  private closed = false;
  /** the framed HealthCheckRequest of a gRPC check, the same for every probe; null for an HTTP check */
  private readonly grpcRequest: Buffer | null;

  constructor(
    private readonly cfg: HealthCheckConfig,
    private readonly endpoints: readonly Endpoint[],
    private readonly onChange: (e: Endpoint, healthy: boolean) => void,
  ) {
    this.grpcRequest = cfg.grpc === undefined ? null : healthCheckRequest(cfg.grpc.service);
  }

  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    // Kept alive past the longest jittered interval, unless the server's own hint is shorter.
    const idle = Math.ceil(this.cfg.interval * (1 + INTERVAL_JITTER)) + KEEP_ALIVE_THRESHOLD_MS;
    for (const endpoint of this.endpoints) {
      const client = new Client(endpoint.origin, {
        pipelining: 1,
        keepAliveTimeout: idle,
        keepAliveMaxTimeout: idle,
        keepAliveTimeoutThreshold: KEEP_ALIVE_THRESHOLD_MS,
        ...protocolOptions(endpoint.protocol, endpoint.tls, this.cfg.timeout),
        // The probe's own timer bounds it: undici's may fire up to ~1s late.
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      const session: Session = { endpoint, client, timer: undefined, inFlight: undefined, successes: 0, failures: 0 };
      this.sessions.push(session);
      // Envoy's `initial_jitter`: spread the first probes over the first
      // interval so a cluster's endpoints are not all probed at once.
      this.schedule(session, Math.random() * this.cfg.interval);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const session of this.sessions) {
      cancel(session.timer);
      session.timer = undefined;
      session.inFlight?.abort();
      void session.client.destroy();
    }
  }

  private schedule(session: Session, delay: number): void {
    session.timer = after(delay, () => void this.probe(session));
  }

  /** The next probe is scheduled only once this one is over, so probes of one endpoint never overlap. */
  private async probe(session: Session): Promise<void> {
    session.timer = undefined;
    const passed = await this.attempt(session);
    if (this.closed) return;
    this.schedule(session, jitteredInterval(this.cfg.interval));
    this.record(session, passed);
  }

  private async attempt(session: Session): Promise<boolean> {
    const controller = new AbortController();
    session.inFlight = controller;
    const deadline = after(this.cfg.timeout, () => controller.abort());
    try {
      if (this.grpcRequest !== null) return await grpcProbe(session.client, this.grpcRequest, controller.signal);
      const { statusCode, body } = await request(session.client, {
        method: 'GET',
        path: this.cfg.path!,
        headers: { 'user-agent': USER_AGENT, connection: 'keep-alive' },
        signal: controller.signal,
      });
      // Read to the end (within the timeout) so the connection can carry the next probe.
      await body.dump({ limit: BODY_LIMIT, signal: controller.signal });
      return statusCode >= 200 && statusCode < 300;
    } catch {
      // Connect failure, reset, timeout or close(): all the same to the thresholds.
      return false;
    } finally {
      cancel(deadline);
      session.inFlight = undefined;
    }
  }

  private record(session: Session, passed: boolean): void {
    const { endpoint } = session;
    if (passed) {
      session.failures = 0;
      if (endpoint.healthy || ++session.successes < this.cfg.healthyThreshold) return;
      session.successes = 0;
      endpoint.healthy = true;
      this.onChange(endpoint, true);
    } else {
      session.successes = 0;
      if (!endpoint.healthy || ++session.failures < this.cfg.unhealthyThreshold) return;
      session.failures = 0;
      endpoint.healthy = false;
      this.onChange(endpoint, false);
    }
  }
}

/**
 * One Health/Check call. grpc-status comes in the trailers, or in the
 * headers of a trailers-only answer; the trailers are known once the body
 * was read to its end.
 */
async function grpcProbe(client: Client, message: Buffer, signal: AbortSignal): Promise<boolean> {
  const { statusCode, headers, trailers, body } = await request(client, {
    method: 'POST',
    path: HEALTH_CHECK_PATH,
    headers: { 'user-agent': USER_AGENT, 'content-type': 'application/grpc', te: 'trailers' },
    body: message,
    signal,
  });
  const bytes = await readLimited(body);
  const grpcStatus = trailers['grpc-status'] ?? headers['grpc-status'];
  return statusCode === 200 && grpcStatus === '0' && bytes !== null && servingStatus(bytes) === SERVING;
}

/** The whole body, or null once it outgrows BODY_LIMIT (leaving the loop early destroys the body). */
async function readLimited(body: Dispatcher.ResponseData['body']): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > BODY_LIMIT) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length);
}
