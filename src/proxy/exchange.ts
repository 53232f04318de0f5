// One request's state, from the first byte to the access-log line. A single
// object per request: the stages write into it and the finish step reads it,
// so metrics and the access log are produced in one place (record), once.

import type { IncomingHttpHeaders } from 'node:http';
import type { Endpoint } from '../cluster/endpoint.js';
import type { AccessLog } from '../observability/access-log.js';
import type { RouteMetrics } from '../observability/metrics.js';
import type { ClusterRuntime, CompiledListener, CompiledRoute } from '../snapshot-types.js';
import type { TraceFields, Tracer } from '../tracing/tracer.js';
import type { Downstream } from './downstream.js';
import { ERRORS, errorBody, type ErrorCode } from './errors.js';
import { grpcErrorHeaders, grpcStatusCounted, grpcStatusOfError, isGrpc } from './grpc.js';
import type { Inbound } from './inbound.js';
import { requestIdFrom, traceFrom } from './request-id.js';

/** What a listener's request handler needs; `listener` is swapped on reload. */
export interface ListenerContext {
  listener: CompiledListener;
  readonly proto: 'http' | 'https';
  readonly accessLog: AccessLog;
  /** set once the drain starts: every response then closes its connection */
  readonly drain: { draining: boolean };
}

/** Envoy-style response flags (CONTRACT §9). */
export type Flag = 'NR' | 'UF' | 'UR' | 'UT' | 'UH' | 'UO' | 'URX' | 'DC' | 'DI' | 'DPE';

const NO_FLAGS: readonly Flag[] = [];
const NO_HEADERS: IncomingHttpHeaders = Object.freeze({});

/** Status logged when the client left before any response was sent (as nginx does). */
export const CLIENT_CLOSED = 499;

/**
 * What every request accounts for, whether answered through a Downstream
 * (Exchange), tunnelled after an Upgrade, or refused with raw bytes before
 * Node made a request of it (`inbound` null: no method, path or headers are
 * known).
 */
export class RequestRecord implements TraceFields {
  readonly startedAt = Date.now();
  readonly startedHr = performance.now();
  readonly clientIp: string;
  readonly requestId: string;
  traceId: string;
  traceparent: string;
  /** the configuration load's tracer, kept for the request's life (a reload swaps the listener's) */
  readonly tracer: Tracer | null;
  /** the SERVER span's id: null when not traced */
  spanId: string | null = null;
  parentSpanId: string | null = null;
  /** tandem's error code, when tandem answered with one */
  errorCode: ErrorCode | null = null;
  route: CompiledRoute | null = null;
  metrics: RouteMetrics;
  cluster: ClusterRuntime | null = null;
  endpoint: Endpoint | null = null;
  attempts = 0;
  flags: Flag[] | null = null;
  bytesIn = 0;
  bytesOut = 0;
  upstreamMs: number | null = null;
  /** a gRPC request (its content type): errors, retries, deadlines and metrics follow gRPC's rules */
  readonly grpc: boolean;
  /** the grpc-status the client got, in headers or trailers; null when none was sent */
  grpcStatus: number | null = null;

  constructor(
    readonly ctx: ListenerContext,
    readonly inbound: Inbound | null,
    socket: { readonly remoteAddress?: string | undefined },
  ) {
    this.metrics = ctx.listener.noRouteMetrics;
    this.clientIp = clientAddress(socket);
    // identified before anything can fail, so every answer carries the id
    const headers = this.headers;
    this.grpc = isGrpc(headers['content-type']);
    this.requestId = requestIdFrom(headers['x-request-id']);
    const tracer = ctx.listener.tracer;
    this.tracer = tracer;
    if (tracer === null) {
      const trace = traceFrom(headers.traceparent);
      this.traceparent = trace.traceparent;
      this.traceId = trace.traceId;
    } else {
      this.traceparent = this.traceId = '';
      tracer.begin(this, headers.traceparent);
    }
  }

  /** request headers, so a record serves as the load balancer's pick context */
  get headers(): IncomingHttpHeaders {
    return this.inbound === null ? NO_HEADERS : this.inbound.headers;
  }

  flag(f: Flag): void {
    if (this.flags === null) this.flags = [f];
    else if (!this.flags.includes(f)) this.flags.push(f);
  }

  /** Metrics and the access-log line, with the status the client saw. */
  protected record(status: number): void {
    if (this.ctx.drain.draining) this.flag('DI');
    const endHr = performance.now();
    const durationMs = endHr - this.startedHr;
    this.metrics.request(status, durationMs / 1000);
    if (this.grpc) this.metrics.grpc(grpcStatusCounted(this.grpcStatus, status, this.flags !== null && this.flags.includes('DC')));
    if (this.spanId !== null) this.tracer!.server(this, status, endHr);
    const accessLog = this.ctx.accessLog;
    if (!accessLog.enabled) return;
    const route = this.route;
    accessLog.write({
      time: this.startedAt,
      requestId: this.requestId,
      traceId: this.traceId,
      spanId: this.spanId,
      clientIp: this.clientIp,
      method: this.inbound?.method ?? '',
      path: this.inbound?.target ?? '',
      // a request refused before parsing came over HTTP/1.x
      protocol: this.inbound?.protocol ?? 'HTTP/1.1',
      status,
      grpcStatus: this.grpcStatus,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      durationMs: Math.round(durationMs * 1000) / 1000,
      upstreamMs: this.upstreamMs,
      listener: this.ctx.listener.config.name,
      route: route === null ? null : route.name,
      cluster: this.cluster === null ? null : this.cluster.cluster.name,
      endpoint: this.endpoint === null ? null : this.endpoint.key,
      attempts: this.attempts,
      flags: this.flags ?? NO_FLAGS,
    });
  }
}

export class Exchange extends RequestRecord {
  declare readonly inbound: Inbound;
  /** the client went away or the exchange ended; late callbacks check it */
  done = false;
  /** the upstream side, once the request is forwarded: told when the exchange ends (and cancelled if still running) */
  upstream: { end(): void } | null = null;

  constructor(
    ctx: ListenerContext,
    inbound: Inbound,
    readonly down: Downstream,
  ) {
    super(ctx, inbound, inbound.socket);
  }

  /**
   * Answers with tandem's own JSON error (CONTRACT §4); a gRPC request gets
   * it as a trailers-only answer instead, which its client can read.
   */
  fail(code: ErrorCode, flag?: Flag, close = false, extra?: Record<string, string>): void {
    if (flag) this.flag(flag);
    this.errorCode = code;
    const down = this.down;
    if (down.status !== 0 || down.closed) {
      down.abort();
      return;
    }
    if (this.grpc) return this.failGrpc(code, close, extra);
    const body = errorBody(code, this.requestId);
    const headers = ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)), 'x-tandem-error', code, 'x-request-id', this.requestId];
    if (extra) for (const k in extra) headers.push(k, extra[k]!);
    down.start(ERRORS[code].status, headers, close || this.ctx.drain.draining);
    down.end(body);
  }

  /** HTTP 200, no body: the call's status is in the headers (docs/grpc.md). */
  private failGrpc(code: ErrorCode, close: boolean, extra: Record<string, string> | undefined): void {
    this.grpcStatus = grpcStatusOfError(code);
    const headers = grpcErrorHeaders(code, ERRORS[code].message, this.requestId);
    if (extra) for (const k in extra) headers.push(k, extra[k]!);
    this.down.start(200, headers, close || this.ctx.drain.draining);
    this.down.end();
  }

  /** Refuses the request with tandem's error `code` and that code's flag, closing the connection when the request itself is at fault. */
  refuse(code: ErrorCode, extra?: Record<string, string>): void {
    const spec = ERRORS[code];
    this.fail(code, spec.flag, spec.closes, extra);
  }

  /**
   * Runs once, when the answer is finished or the client's side closed
   * (whichever comes first): metrics and the access log line.
   */
  finish(): void {
    if (this.done) return;
    this.done = true;
    this.upstream?.end();
    const down = this.down;
    let status = down.status;
    if (status === 0) {
      status = CLIENT_CLOSED;
      this.flag('DC');
    } else if (!down.complete && !this.flags?.includes('UR') && !this.flags?.includes('UT')) {
      this.flag('DC');
    }
    this.record(status);
  }
}

/** The peer's address; an IPv4 client of a dual-stack (`::`) listener without its `::ffff:` mapping. */
function clientAddress(socket: { readonly remoteAddress?: string | undefined }): string {
  const a = socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}
