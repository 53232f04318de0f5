// HTTP/1.1 Upgrade (WebSocket): the stages every request passes
// (proxy/handle.ts), a place among the cluster's requests like any forwarded
// request (cluster/admission.ts), then the two sockets are joined byte for
// byte until either side closes.

import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { http } from '../node-http.js';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { breakerVerdict, enterCluster, leaveCluster } from '../cluster/admission.js';
import type { Endpoint } from '../cluster/endpoint.js';
import { UpstreamTry } from '../cluster/upstream-try.js';
import type { Deadline } from '../proxy/deadlines.js';
import { ERRORS, rawErrorResponse, type ErrorCode } from '../proxy/errors.js';
import { CLIENT_CLOSED, RequestRecord, type ListenerContext } from '../proxy/exchange.js';
import { runStages, upstreamHeaders, type StagedRequest } from '../proxy/handle.js';
import type { Failure } from '../proxy/attempt.js';
import { buildResponseHeaders, headerSlot, type CompiledHeaderOps } from '../proxy/headers.js';
import type { Inbound } from '../proxy/inbound.js';
import type { ClusterRuntime, CompiledRoute } from '../snapshot-types.js';
import { traceTry } from '../tracing/tracer.js';
import { Http1Inbound } from './http1.js';

export function tunnelUpgrade(ctx: ListenerContext, req: IncomingMessage, client: Duplex, head: Buffer, tunnels: Set<Duplex>): void {
  runStages(new Tunnel(ctx, new Http1Inbound(req), client, head, tunnels), openTunnel);
}

function openTunnel(t: Tunnel, route: CompiledRoute, upstreamPath: string, ops: CompiledHeaderOps | undefined): void {
  t.open(route, upstreamPath, ops);
}

/**
 * An upgrade request, from its head to the tunnel's end. Logged once, when
 * the upgrade is refused or when the tunnel closes (its duration is the
 * tunnel's life).
 */
class Tunnel extends RequestRecord implements StagedRequest {
  declare readonly inbound: Inbound;
  done = false;
  /** the upstream half while the upgrade waits for its answer */
  private dispatch: UpgradeDispatch | null = null;
  /** the same, kept to the end for the cluster's accounting of the try */
  private upgrade: UpgradeDispatch | null = null;
  private timer: Deadline<UpgradeDispatch> | null = null;
  /** the upstream's socket once the tunnel is open */
  private upstream: Duplex | null = null;
  /** holds a place among the cluster's requests until it ends */
  private admitted = false;
  /** the client left before the tunnel opened */
  private left = false;

  constructor(
    ctx: ListenerContext,
    inbound: Inbound,
    readonly client: Duplex,
    private readonly head: Buffer,
    private readonly tunnels: Set<Duplex>,
  ) {
    super(ctx, inbound, inbound.socket);
    client.on('error', () => client.destroy());
    // A FIN before the tunnel opens is a client giving up, as for any
    // request; once it is open, the half-close goes through to the upstream.
    client.once('end', () => {
      if (this.upstream === null) this.abandon();
    });
    client.once('close', () => {
      this.tunnels.delete(client);
      if (this.upstream !== null) this.upstream.destroy();
      else this.abandon();
    });
  }

  /** Answers with raw bytes and closes: the connection was handed over by Node and carries nothing else. */
  refuse(code: ErrorCode, extra?: Record<string, string>): void {
    if (!this.client.writable) return this.gone();
    const { status, flag } = ERRORS[code];
    if (flag !== undefined) this.flag(flag);
    this.errorCode = code;
    this.client.end(rawErrorResponse(code, this.requestId, extra));
    this.end(status);
  }

  open(route: CompiledRoute, upstreamPath: string, ops: CompiledHeaderOps | undefined): void {
    // a direct response has nothing to tunnel to
    if (route.pickCluster === null) return this.refuse('no_route');
    const cluster = route.pickCluster();
    this.cluster = cluster;
    const refused = enterCluster(cluster);
    if (refused !== null) return this.refuse(refused);
    this.admitted = true;
    const endpoint = cluster.cluster.pick(this);
    if (endpoint === undefined) return this.refuse('no_healthy_upstream');
    this.endpoint = endpoint;
    this.attempts = 1;
    const dispatch = new UpgradeDispatch(this, cluster, endpoint, route.responseOps);
    this.dispatch = dispatch;
    this.upgrade = dispatch;
    // The route and idle timeouts bound the wait for the upstream's answer
    // (and the relay of a refusal), not the life of the tunnel.
    if (route.upgradeDeadlines !== null) this.timer = route.upgradeDeadlines.add(onUpgradeTimeout, dispatch);
    const inbound = this.inbound;
    const headers = upstreamHeaders(this, route, ops);
    if (this.spanId !== null) traceTry(this, dispatch, headers, headerSlot(headers, 'traceparent', this.traceparent));
    endpoint.pool.dispatch({ path: upstreamPath, method: inbound.method, headers, upgrade: String(inbound.headers.upgrade ?? 'websocket') }, dispatch);
  }

  /** The upstream answered, failed, or was stopped. */
  answered(answer: UpstreamAnswer): void {
    this.dispatch = null;
    this.timer?.cancel();
    this.timer = null;
    if (this.left) {
      answer.socket?.destroy();
      return this.gone();
    }
    if (answer.socket !== null) return this.establish(answer.socket, answer.headers);
    if (answer.error !== null) return this.refuse(answer.error);
    // its own refusal was relayed
    this.end(answer.status);
  }

  private establish(upstream: Duplex, responseHeaders: IncomingHttpHeaders): void {
    // A tunnel established is a success, given now: a long-lived tunnel must
    // not keep its verdict (or a half-open trial) until it closes.
    this.cluster!.breaker?.record(true);
    const client = this.client;
    let head101 = 'HTTP/1.1 101 Switching Protocols\r\n';
    for (const name in responseHeaders) {
      const value = responseHeaders[name];
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) head101 += `${name}: ${v}\r\n`;
    }
    head101 += `x-request-id: ${this.requestId}\r\n\r\n`;
    client.write(head101);
    if (this.head.length > 0) upstream.write(this.head);

    this.upstream = upstream;
    this.tunnels.add(client);
    this.bytesIn = this.head.length;
    client.on('data', (c: Buffer) => void (this.bytesIn += c.length));
    upstream.on('data', (c: Buffer) => void (this.bytesOut += c.length));
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => {
      client.destroy();
      this.end(101);
    });
    upstream.pipe(client);
    client.pipe(upstream);
    // The route's idleTimeout holds for a tunnel too: every byte either way
    // passes the client's socket, whose timeout any read or write restarts.
    const idle = this.route!.idleTimeout;
    if (idle > 0) {
      // Node types the upgrade's socket as a Duplex; it is the client's net.Socket.
      (client as Socket).setTimeout(idle, () => {
        this.flag('UT');
        upstream.destroy();
      });
    }
  }

  /** The client left before the tunnel opened: the upstream try is stopped (its answer ends the record), or the record ends here. */
  private abandon(): void {
    this.left = true;
    if (this.dispatch !== null) this.dispatch.stop(CLIENT_GONE);
    else this.gone();
  }

  /** The client left before any answer. */
  private gone(): void {
    if (this.done) return;
    this.client.destroy();
    this.flag('DC');
    this.end(CLIENT_CLOSED);
  }

  private end(status: number): void {
    if (this.done) return;
    this.done = true;
    const upgrade = this.upgrade;
    if (upgrade !== null) {
      // for outlier detection as a forwarded try: a 5xx, a failure to reach
      // or hear from the endpoint, or a refusal cut mid-relay counts against it
      const failed = status === CLIENT_CLOSED ? null : status >= 500 || this.flags?.includes('UR') === true;
      const ms = upgrade.finishTry(status, failed);
      this.upstreamMs = Math.round(ms * 1000) / 1000;
      if (upgrade.spanId !== null) this.tracer!.client(this, upgrade, status);
    }
    // an established tunnel gave the breaker its verdict on its 101
    if (this.admitted) leaveCluster(this.cluster!, status === 101 ? undefined : breakerVerdict(status, this.flags));
    this.record(status);
  }
}

function onUpgradeTimeout(dispatch: UpgradeDispatch): void {
  dispatch.stop(UPGRADE_TIMEOUT);
}

/** How the upstream answered an upgrade: its socket on a 101, else the error to send (null: its own answer was relayed). */
type UpstreamAnswer =
  | { socket: Duplex; headers: IncomingHttpHeaders }
  | { socket: null; error: ErrorCode; status?: undefined }
  | { socket: null; error: null; status: number };

const CLIENT_GONE = new Error('client closed the connection');

/** the try's failure behind each error an upgrade can end with */
const FAILURE_OF: Partial<Record<ErrorCode, Failure>> = {
  upstream_connect_failure: 'connect-failure',
  upstream_reset: 'reset',
  upstream_timeout: 'timeout',
};
const UPGRADE_TIMEOUT = new Error('upgrade not answered within the route or idle timeout');

/**
 * The upstream half of an upgrade, as an undici dispatch handler. A 101
 * hands over the socket. Any other answer (the application's 401 or 403, a
 * 426) is relayed to the client as it is, then the connection closes: the
 * client asked for a tunnel and gets the reason it was refused, where
 * undici's own upgrade() would only say "bad upgrade".
 */
class UpgradeDispatch extends UpstreamTry implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private stopped: Error | null = null;
  /** the status of a refusal being relayed, 0 before one */
  private relaying = 0;
  private settled = false;

  constructor(
    private readonly tunnel: Tunnel,
    cluster: ClusterRuntime,
    endpoint: Endpoint,
    private readonly responseOps: CompiledHeaderOps | undefined,
  ) {
    super(cluster, endpoint);
  }

  stop(reason: Error): void {
    if (this.settled) return;
    this.stopped ??= reason;
    this.controller?.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.unqueue();
    // still queued when stopped: abort as soon as it starts
    if (this.stopped !== null) controller.abort(this.stopped);
    else this.controller = controller;
  }

  onRequestUpgrade(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.answered();
    if (status === 101) {
      this.committed = true;
      return this.settle({ socket, headers });
    }
    socket.destroy();
    this.settle({ socket: null, error: 'upstream_reset' });
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    this.relaying = status;
    this.committed = true;
    this.answered();
    const pairs = buildResponseHeaders(headers, this.tunnel.requestId, this.responseOps);
    let head = `HTTP/1.1 ${status} ${statusMessage || http.STATUS_CODES[status] || ''}\r\n`;
    for (let i = 0; i < pairs.length; i += 2) head += `${pairs[i]}: ${pairs[i + 1]}\r\n`;
    // without content-length the body is framed by the close
    this.tunnel.client.write(`${head}connection: close\r\n\r\n`);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.tunnel.bytesOut += chunk.length;
    if (!this.tunnel.client.write(chunk)) {
      controller.pause();
      this.tunnel.client.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.tunnel.client.end();
    this.settle({ socket: null, error: null, status: this.relaying });
  }

  onResponseError(_controller: Dispatcher.DispatchController, _err: Error): void {
    if (this.relaying !== 0) {
      // a refusal cut mid-body must not look complete
      this.tunnel.client.destroy();
      this.tunnel.flag('UR');
      return this.settle({ socket: null, error: null, status: this.relaying });
    }
    if (this.stopped === UPGRADE_TIMEOUT) return this.settle({ socket: null, error: 'upstream_timeout' });
    // never written to a connection: the upstream could not be reached
    this.settle({ socket: null, error: this.controller === null ? 'upstream_connect_failure' : 'upstream_reset' });
  }

  private settle(answer: UpstreamAnswer): void {
    if (this.settled) return;
    this.settled = true;
    if (answer.socket === null && answer.error !== null) this.failure = FAILURE_OF[answer.error] ?? null;
    else if (this.tunnel.flags?.includes('UR')) this.failure = 'reset';
    this.tunnel.answered(answer);
  }
}
