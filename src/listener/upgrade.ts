// HTTP/1.1 Upgrade (WebSocket): routed like any request, then the two
// sockets are joined byte for byte until either side closes.

import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { http } from '../node-http.js';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ERRORS, rawErrorResponse, type ErrorCode } from '../proxy/errors.js';
import { CLIENT_CLOSED, RequestRecord, type Flag, type ListenerContext } from '../proxy/exchange.js';
import { admissionError } from '../proxy/handle.js';
import { buildResponseHeaders, buildUpstreamHeaders, type CompiledHeaderOps } from '../proxy/headers.js';
import { normalizePath, splitTarget } from '../router/normalize.js';
import { findRoute } from '../router/route-table.js';
import { forwardedClientCert } from './client-cert.js';

/**
 * A tunnelled request's record: logged once, when the upgrade is refused or
 * when the tunnel closes (its duration is the tunnel's life).
 */
class Tunnel extends RequestRecord {
  private recorded = false;
  private readonly attemptStartedHr = performance.now();

  end(status: number): void {
    if (this.recorded) return;
    this.recorded = true;
    if (this.cluster !== null && this.attempts > 0) {
      const ms = performance.now() - this.attemptStartedHr;
      this.upstreamMs = Math.round(ms * 1000) / 1000;
      this.cluster.metrics.attempt(status, ms / 1000);
    }
    this.record(status);
  }
}

const FLAGS: Partial<Record<ErrorCode, Flag>> = {
  no_route: 'NR',
  no_healthy_upstream: 'UH',
  upstream_connect_failure: 'UF',
  upstream_reset: 'UR',
  upstream_timeout: 'UT',
};

export async function tunnelUpgrade(
  ctx: ListenerContext,
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  tunnels: Set<Duplex>,
): Promise<void> {
  client.on('error', () => client.destroy());
  const t = new Tunnel(ctx, req, req.socket);
  const reject = (code: ErrorCode, extra?: Record<string, string>): void => {
    const flag = FLAGS[code];
    if (flag !== undefined) t.flag(flag);
    if (client.writable) client.end(rawErrorResponse(code, t.requestId, extra));
    else {
      client.destroy();
      t.flag('DC');
    }
    t.end(ERRORS[code].status);
  };
  const { path, query } = splitTarget(req.url ?? '');
  const normalized = normalizePath(path);
  // the same admission rules as any request: an Upgrade header is no way around them
  if (normalized === null) return reject('bad_request');
  const rejected = admissionError(req, ctx.listener.config.limits);
  if (rejected !== null) return reject(rejected);
  const route = findRoute(ctx.listener, req, normalized);
  if (route === undefined || route.pickCluster === null) return reject('no_route');
  t.route = route;
  t.metrics = route.metrics;
  // an Upgrade header must not be a way around the route's rate limit
  const wait = route.rateLimit === null ? 0 : route.rateLimit.take(t);
  if (wait > 0) return reject('rate_limited', { 'retry-after': String(wait) });
  let ops = route.requestOps;
  if (route.auth !== null) {
    const outcome = await route.auth.check(req.headers.authorization);
    if (client.destroyed) {
      t.flag('DC');
      return t.end(CLIENT_CLOSED);
    }
    if (!outcome.ok) return reject('unauthorized', { 'www-authenticate': outcome.challenge });
    ops = outcome.ops;
  }
  const cluster = route.pickCluster();
  t.cluster = cluster;
  const endpoint = cluster.cluster.pick(t);
  if (endpoint === undefined) return reject('no_healthy_upstream');
  t.endpoint = endpoint;
  t.attempts = 1;

  const headers = buildUpstreamHeaders(req.rawHeaders, {
    clientIp: t.clientIp,
    proto: ctx.proto,
    requestId: t.requestId,
    traceparent: t.traceparent,
    hostOverride: route.hostRewrite,
    clientCert: ctx.proto === 'https' ? forwardedClientCert(req.socket) : undefined,
    ops,
  });
  const upstreamPath = (route.rewritePath === null ? normalized : route.rewritePath(normalized)) + query;
  endpoint.begin();
  cluster.metrics.activeInc();
  const answer = await new Promise<UpstreamAnswer>((resolve) => {
    let timer: NodeJS.Timeout | null = null;
    const dispatch = new UpgradeDispatch(client, t, route.responseOps, (a) => {
      if (timer !== null) clearTimeout(timer);
      resolve(a);
    });
    client.once('close', () => dispatch.stop(CLIENT_GONE));
    // The route timeout bounds the wait for the upstream's answer (and the
    // relay of a refusal), not the life of the tunnel.
    if (route.timeout > 0) timer = setTimeout(() => dispatch.stop(UPGRADE_TIMEOUT), route.timeout);
    endpoint.pool.dispatch(
      { path: upstreamPath, method: req.method ?? 'GET', headers, upgrade: String(req.headers.upgrade ?? 'websocket') },
      dispatch,
    );
  });
  if (answer.socket === null) {
    endpoint.end();
    cluster.metrics.activeDec();
    if (answer.error !== null) reject(answer.error);
    else t.end(answer.status);
    return;
  }
  const upstream = answer.socket;
  const responseHeaders = answer.headers;
  if (client.destroyed) {
    endpoint.end();
    cluster.metrics.activeDec();
    upstream.destroy();
    t.flag('DC');
    t.end(CLIENT_CLOSED);
    return;
  }

  let head101 = 'HTTP/1.1 101 Switching Protocols\r\n';
  for (const name in responseHeaders) {
    const value = responseHeaders[name];
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) head101 += `${name}: ${v}\r\n`;
  }
  head101 += `x-request-id: ${t.requestId}\r\n\r\n`;
  client.write(head101);
  if (head.length > 0) upstream.write(head);

  tunnels.add(client);
  t.bytesIn = head.length;
  client.on('data', (c: Buffer) => void (t.bytesIn += c.length));
  upstream.on('data', (c: Buffer) => void (t.bytesOut += c.length));
  upstream.on('error', () => client.destroy());
  client.on('close', () => {
    tunnels.delete(client);
    upstream.destroy();
  });
  upstream.on('close', () => {
    endpoint.end();
    cluster.metrics.activeDec();
    client.destroy();
    t.end(101);
  });
  upstream.pipe(client);
  client.pipe(upstream);
}

/** How the upstream answered an upgrade: its socket on a 101, else the error to send (null: its own answer was relayed). */
type UpstreamAnswer =
  | { socket: Duplex; headers: IncomingHttpHeaders }
  | { socket: null; error: ErrorCode; status?: undefined }
  | { socket: null; error: null; status: number };

const CLIENT_GONE = new Error('client closed the connection');
const UPGRADE_TIMEOUT = new Error('upgrade not answered within the route timeout');

/**
 * The upstream half of an upgrade, as an undici dispatch handler. A 101
 * hands over the socket. Any other answer (the application's 401 or 403, a
 * 426) is relayed to the client as it is, then the connection closes: the
 * client asked for a tunnel and gets the reason it was refused, where
 * undici's own upgrade() would only say "bad upgrade".
 */
class UpgradeDispatch implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private stopped: Error | null = null;
  /** the status of a refusal being relayed, 0 before one */
  private relaying = 0;
  private settled = false;

  constructor(
    private readonly client: Duplex,
    private readonly record: RequestRecord,
    private readonly responseOps: CompiledHeaderOps | undefined,
    private readonly onAnswer: (answer: UpstreamAnswer) => void,
  ) {}

  stop(reason: Error): void {
    if (this.settled) return;
    this.stopped ??= reason;
    this.controller?.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    // still queued when stopped: abort as soon as it starts
    if (this.stopped !== null) controller.abort(this.stopped);
    else this.controller = controller;
  }

  onRequestUpgrade(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    if (status === 101) return this.settle({ socket, headers });
    socket.destroy();
    this.settle({ socket: null, error: 'upstream_reset' });
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    this.relaying = status;
    const pairs = buildResponseHeaders(headers, this.record.requestId, this.responseOps);
    let head = `HTTP/1.1 ${status} ${statusMessage || http.STATUS_CODES[status] || ''}\r\n`;
    for (let i = 0; i < pairs.length; i += 2) head += `${pairs[i]}: ${pairs[i + 1]}\r\n`;
    // without content-length the body is framed by the close
    this.client.write(`${head}connection: close\r\n\r\n`);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.record.bytesOut += chunk.length;
    if (!this.client.write(chunk)) {
      controller.pause();
      this.client.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.client.end();
    this.settle({ socket: null, error: null, status: this.relaying });
  }

  onResponseError(_controller: Dispatcher.DispatchController, _err: Error): void {
    if (this.relaying !== 0) {
      // a refusal cut mid-body must not look complete
      this.client.destroy();
      this.record.flag('UR');
      return this.settle({ socket: null, error: null, status: this.relaying });
    }
    if (this.stopped === UPGRADE_TIMEOUT) return this.settle({ socket: null, error: 'upstream_timeout' });
    // never written to a connection: the upstream could not be reached
    this.settle({ socket: null, error: this.controller === null ? 'upstream_connect_failure' : 'upstream_reset' });
  }

  private settle(answer: UpstreamAnswer): void {
    if (this.settled) return;
    this.settled = true;
    this.onAnswer(answer);
  }
}
