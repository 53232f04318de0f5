// Sends a routed request upstream and sees it through its tries. The first
// try goes out directly: a request answered by it allocates no promise and
// no retry state. A failed try asks the request's RetryState what follows
// (retry-state.ts). Owns the route and per-try timers and the cancellation
// when the client goes away. A gRPC request brings its own deadline
// (grpc-timeout), passed on to each try as the time left (docs/grpc.md).

import type { Readable } from 'node:stream';
import { now } from '../clock.js';
import { breakerVerdict, enterCluster, leaveCluster } from '../cluster/admission.js';
import type { ClusterRuntime, CompiledRoute } from '../snapshot-types.js';
import { traceTry } from '../tracing/tracer.js';
import { Attempt, timeoutReason, type AttemptOwner, type Failure } from './attempt.js';
import { BodyCopy } from './body-copy.js';
import { ERRORS } from './errors.js';
import { OwnDeadline, type Deadline, type PendingDeadline } from './deadlines.js';
import { CLIENT_CLOSED, type Exchange } from './exchange.js';
import { formatGrpcTimeout, grpcRequestTimeout, isGrpcFailure, parseGrpcTimeout } from './grpc.js';
import { headerSlot } from './headers.js';
import { IdleWatch } from './idle-watch.js';
import { isIdempotent, mayResendBody, retriesOnStatus, retryAfterMs, type RetryCause, type RetryPolicy } from './retry-policy.js';
import { RetryState, type RetryOwner, type Verdict } from './retry-state.js';

const ROUTE_TIMEOUT = timeoutReason('route timeout');
const TRY_TIMEOUT = timeoutReason('per-try timeout');
const CLIENT_GONE = new Error('client closed the connection');

export class Forward implements AttemptOwner, RetryOwner {
  private attempt: Attempt | null = null;
  private routeTimer: PendingDeadline | null = null;
  private tryTimer: Deadline<Attempt> | null = null;
  /** the route's idleTimeout, when it has one: bytes either way keep it from firing */
  idle: IdleWatch | null = null;
  /** made at the first failed try */
  private retry: RetryState | null = null;
  /** admitted by the cluster's limits (and breaker): released when the exchange ends */
  private admitted = false;
  private expired = false;
  /** the whole request body, when it is small and a retry may need to send it again */
  private buffered: Buffer | null = null;
  /** a gRPC request's streamed body, kept as it goes when a retry may need it (it becomes `buffered` once sent whole) */
  bodyCopy: BodyCopy | null = null;
  /** the request's timeout in ms, 0 = none: the route's, or a gRPC request's own grpc-timeout within maxGrpcTimeout */
  private readonly timeout: number;
  /** where each try writes a gRPC request's time left in `headers` (its grpc-timeout); -1: it sent none */
  private readonly grpcTimeoutSlot: number;
  private readonly policy: RetryPolicy;
  private readonly idempotent: boolean;
  private readonly method: string;
  /** where each traced try writes its traceparent in `headers`; -1: untraced, or the route's ops own the header */
  private readonly traceSlot: number;

  constructor(
    private readonly ex: Exchange,
    private readonly route: CompiledRoute,
    private readonly cluster: ClusterRuntime,
    private readonly path: string,
    private readonly headers: string[],
    private readonly body: Readable | null,
  ) {
    this.policy = route.retry;
    this.method = ex.inbound.method;
    this.idempotent = isIdempotent(this.method);
    this.traceSlot = ex.spanId === null ? -1 : headerSlot(headers, 'traceparent', ex.traceparent);
    const sent = ex.grpc ? ex.inbound.headers['grpc-timeout'] : undefined;
    const requested = parseGrpcTimeout(sent);
    this.timeout = grpcRequestTimeout(requested, route.maxGrpcTimeout, route.timeout);
    this.grpcTimeoutSlot = requested === null ? -1 : headerSlot(headers, 'grpc-timeout', sent as string);
  }

  start(): void {
    const refused = enterCluster(this.cluster);
    if (refused !== null) return this.ex.refuse(refused);
    this.admitted = true;
    const idle = this.route.idleTimeout;
    if (idle > 0) this.idle = new IdleWatch(idle, () => this.expire());
    const body = this.body;
    if (body !== null && this.keepsBody()) return this.bufferBody(body);
    if (body !== null && this.ex.grpc && mayResendBody(this.policy, this.idempotent, true)) this.bodyCopy = new BodyCopy(this.policy.bufferLimit);
    // The route timeout runs from the end of the client's request: a request
    // without a body is complete now, one with a body once it was sent.
    if (body === null) this.startRouteTimer();
    this.send(false);
  }

  get bodyBuffered(): boolean {
    return this.buffered !== null;
  }

  /** A body of unknown length (chunked) streams: it could outgrow the limit. */
  private keepsBody(): boolean {
    if (!mayResendBody(this.policy, this.idempotent, this.ex.grpc)) return false;
    const length = this.ex.inbound.headers['content-length'];
    return length !== undefined && Number(length) <= this.policy.bufferLimit;
  }

  private bufferBody(body: Readable): void {
    const chunks: Buffer[] = [];
    body.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      this.idle?.touch();
    });
    body.once('end', () => {
      // A client that left meanwhile finished the exchange.
      if (this.ex.done) return;
      this.buffered = Buffer.concat(chunks);
      this.ex.bytesIn = this.buffered.length;
      this.startRouteTimer();
      this.send(false);
    });
  }

  /**
   * The exchange is over (response finished, or the client went away): stop
   * everything still running upstream, then give the cluster its verdict.
   */
  end(): void {
    this.stopTimers();
    this.retry?.finish();
    this.attempt?.cancel(CLIENT_GONE);
    if (!this.admitted) return;
    this.admitted = false;
    leaveCluster(this.cluster, this.verdict());
  }

  /**
   * The breaker's verdict on the request's answer, or on the client that
   * left before one. tandem's own error is judged by its HTTP status on
   * every protocol: in gRPC it travels as a status in a 200 (a client's
   * request timeout as UNAVAILABLE), which is no fault of the upstream.
   */
  private verdict(): boolean | null {
    const { down, errorCode } = this.ex;
    if (errorCode !== null) return breakerVerdict(ERRORS[errorCode].status, this.ex.flags);
    return breakerVerdict(down.status === 0 ? CLIENT_CLOSED : down.status, this.ex.flags, this.ex.grpcStatus);
  }

  requestSent(): void {
    if (this.bodyCopy !== null) {
      this.buffered = this.bodyCopy.whole();
      this.bodyCopy = null;
    }
    if (this.routeTimer === null && !this.expired) this.startRouteTimer();
  }

  /**
   * A retriable status is decided as it arrives: the response is discarded
   * only when a retry will follow; otherwise it goes to the client. A gRPC
   * condition matches a trailers-only answer: HTTP 200 with the grpc-status
   * in its head.
   */
  retriesStatus(status: number, retryAfter: string | string[] | undefined, grpcStatus: number | null): boolean {
    const p = this.policy;
    if (grpcStatus !== null && status === 200 && p.grpcStatuses.has(grpcStatus)) return this.decide('grpc-status', grpcStatus, false, null) === 'retry';
    if (!p.onStatus || !retriesOnStatus(p, status)) return false;
    const honoured = retryAfter === undefined ? null : this.honouredRetryAfter(retryAfter);
    return this.decide('status', status, false, honoured) === 'retry';
  }

  attemptFailed(attempt: Attempt, failure: Failure, status: number): void {
    // a discarded 4xx (a retriable-status-codes match) is no fault of the endpoint's
    this.endTry(attempt, status, failure !== 'status' || status >= 500 || isGrpcFailure(attempt.grpcStatus));
    if (this.ex.done) return;
    // A discarded status was granted its retry when it arrived (retriesStatus).
    const next = failure === 'status' ? 'retry' : this.decide(failure, status, attempt.reusedConnection && !attempt.responded, null);
    if (next === 'free') this.send(true);
    else if (next === 'retry') this.retry!.wait();
    else this.giveUp(failure);
  }

  /** The retry state's answer; a request whose retries ran out is flagged URX. */
  private decide(failure: RetryCause, status: number, stale: boolean, retryAfter: number | null): Verdict {
    const retry = (this.retry ??= new RetryState(this.policy, this.idempotent, this.cluster.limits, this.cluster.metrics, this));
    const next = retry.decide(failure, status, stale, retryAfter);
    // Exhausted only when some retry was made: a POST never retried is not.
    if ((next === 'stop' || next === 'limited') && retry.retried > 0) this.ex.flag('URX');
    return next;
  }

  get resendable(): boolean {
    return !this.expired && !this.ex.done && (this.body === null || this.buffered !== null || !this.body.readableDidRead);
  }

  resend(): void {
    this.send(false);
  }

  attemptEnded(attempt: Attempt, clean: boolean): void {
    const status = this.ex.down.status;
    this.endTry(attempt, status, !clean || status >= 500 || isGrpcFailure(attempt.grpcStatus));
    this.stopTimers();
    this.retry?.finish();
  }

  bodyTooLarge(attempt: Attempt): void {
    // answers with connection close: the rest of the body is never read
    this.ex.fail('payload_too_large', undefined, true);
    this.endTry(attempt, 413, null);
    this.stopTimers();
  }

  /** `fresh`: on a new connection of its own (the free retry), not a pooled one */
  private send(fresh: boolean): void {
    const ex = this.ex;
    const endpoint = this.cluster.cluster.pick(ex, ex.endpoint ?? undefined);
    if (endpoint === undefined) {
      this.stopTimers();
      this.retry?.finish();
      ex.fail('no_healthy_upstream', 'UH');
      return;
    }
    ex.endpoint = endpoint;
    ex.attempts++;
    const attempt = new Attempt(ex, this, endpoint);
    if (ex.spanId !== null) traceTry(ex, attempt, this.headers, this.traceSlot);
    this.attempt = attempt;
    if (this.grpcTimeoutSlot !== -1) this.headers[this.grpcTimeoutSlot] = formatGrpcTimeout(this.timeLeft());
    const tries = this.route.tryDeadlines;
    if (tries !== null) this.tryTimer = tries.add(onTryTimeout, attempt);
    const options = { path: this.path, method: this.method, headers: this.headers, body: this.buffered ?? this.body };
    if (fresh) endpoint.dispatchOnNewConnection(options, attempt);
    else endpoint.pool.dispatch(options, attempt);
  }

  /**
   * The bookkeeping of a finished try. `failed` is the endpoint's verdict
   * for outlier detection: null when the try says nothing about it (the
   * client left, the request body was too large).
   */
  private endTry(attempt: Attempt, status: number, failed: boolean | null): void {
    if (this.tryTimer !== null) {
      this.tryTimer.cancel();
      this.tryTimer = null;
    }
    const ms = attempt.finishTry(status, this.ex.done ? null : failed);
    this.ex.upstreamMs = Math.round(ms * 1000) / 1000;
    if (attempt.spanId !== null) this.ex.tracer!.client(this.ex, attempt, status);
    if (this.attempt === attempt) this.attempt = null;
  }

  /** Retry-After is the backoff when the route's time left allows it; else the usual backoff applies. */
  private honouredRetryAfter(value: string | string[]): number | null {
    const ms = retryAfterMs(Array.isArray(value) ? value[0]! : value);
    if (ms === null) return null;
    const left = this.timeout === 0 ? Infinity : this.timeout - (performance.now() - this.ex.startedHr);
    return ms < left ? ms : null;
  }

  private giveUp(failure: Failure): void {
    this.stopTimers();
    this.retry?.finish();
    const ex = this.ex;
    if (this.retry !== null && this.retry.retried > 0) ex.flag('URX');
    // A body the upstream did not take entirely is still on the client's
    // connection: it cannot carry another request.
    const close = this.body !== null && !ex.inbound.bodyReceived;
    switch (failure) {
      case 'connect-failure':
        ex.fail('upstream_connect_failure', 'UF', close);
        break;
      case 'timeout':
        ex.fail('upstream_timeout', 'UT', close);
        break;
      default:
        ex.fail('upstream_reset', 'UR', close);
    }
  }

  private startRouteTimer(): void {
    const route = this.route;
    if (this.timeout !== route.timeout) this.routeTimer = new OwnDeadline(this.timeout, onRouteTimeout, this);
    else if (route.routeDeadlines !== null) this.routeTimer = route.routeDeadlines.add<Forward>(onRouteTimeout, this);
  }

  /** The request's time left in ms: all of it until its timer starts with the end of the request. */
  private timeLeft(): number {
    return this.routeTimer === null ? this.timeout : this.routeTimer.at - now();
  }

  /** The route timeout or the idle timeout fired: no further try, 504 or an aborted response. */
  expire(): void {
    this.stopTimers();
    this.expired = true;
    const ex = this.ex;
    ex.flag('UT');
    const attempt = this.attempt;
    if (attempt !== null) {
      attempt.cancel(ROUTE_TIMEOUT);
      return;
    }
    // Between two tries (backoff): nothing upstream to cancel.
    if (!ex.done) this.giveUp('timeout');
  }

  private stopTimers(): void {
    if (this.idle !== null) {
      this.idle.stop();
      this.idle = null;
    }
    if (this.routeTimer !== null) {
      this.routeTimer.cancel();
      this.routeTimer = null;
    }
    if (this.tryTimer !== null) {
      this.tryTimer.cancel();
      this.tryTimer = null;
    }
  }
}

function onRouteTimeout(f: Forward): void {
  f.expire();
}

function onTryTimeout(a: Attempt): void {
  a.cancel(TRY_TIMEOUT);
}
