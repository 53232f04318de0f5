// Sends a routed request upstream: the first try directly (the hot path
// allocates no promise), later tries through p-retry with full-jitter
// backoff. Owns the route and per-try timers and the cancellation when the
// client goes away.

import { setTimeout as sleep } from 'node:timers/promises';
import type { IncomingMessage } from 'node:http';
import pRetry from 'p-retry';
import { enterCluster, leaveCluster } from '../cluster/admission.js';
import type { ClusterRuntime, CompiledRoute } from '../snapshot-types.js';
import { Attempt, timeoutReason, type AttemptOwner, type Failure } from './attempt.js';
import type { Deadline } from './deadlines.js';
import type { Exchange } from './exchange.js';
import {
  allowsRetry,
  backoffDelay,
  isIdempotent,
  mayResendBody,
  retriesOnStatus,
  retryAfterMs,
  type RetryPolicy,
} from './retry-policy.js';

/** What the next step after a failed try is: a free retry, a counted one, or none. */
type Next = 'free' | 'counted' | null;

interface TryResult {
  failure: Failure;
  status: number;
  next: Next;
  /** the upstream's Retry-After, in ms, when it is to be honoured as the backoff */
  retryAfter: number | null;
}

class TryFailed extends Error {
  constructor(readonly result: TryResult) {
    super(result.failure);
  }
}

const ROUTE_TIMEOUT = timeoutReason('route timeout');
const TRY_TIMEOUT = timeoutReason('per-try timeout');
const CLIENT_GONE = new Error('client closed the connection');

export class Forward implements AttemptOwner {
  private attempt: Attempt | null = null;
  private routeTimer: Deadline<Forward> | null = null;
  private tryTimer: Deadline<Attempt> | null = null;
  private retriesUsed = 0;
  private freeRetryUsed = false;
  /** a counted retry holds one of the cluster's maxRetries slots until its try ends */
  private holdsRetrySlot = false;
  /** admitted by the cluster's limits (and breaker): released when the exchange ends */
  private admitted = false;
  /** Retry-After of the response just discarded for a retry */
  private retryAfter: number | null = null;
  private expired = false;
  private stopRetries: AbortController | null = null;
  private settleTry: ((r: TryResult | null) => void) | null = null;
  /** the whole request body, when it is small and a retry may need to send it again */
  private buffered: Buffer | null = null;
  private readonly policy: RetryPolicy;
  private readonly idempotent: boolean;
  private readonly method: string;

  constructor(
    private readonly ex: Exchange,
    private readonly route: CompiledRoute,
    private readonly cluster: ClusterRuntime,
    private readonly path: string,
    private readonly headers: string[],
    private readonly body: IncomingMessage | null,
  ) {
    this.policy = route.retry;
    this.method = ex.req.method!;
    this.idempotent = isIdempotent(this.method);
  }

  start(): void {
    const refused = enterCluster(this.cluster);
    if (refused !== null) return this.ex.refuse(refused);
    this.admitted = true;
    const body = this.body;
    if (body !== null && this.keepsBody(body)) return this.bufferBody(body);
    // The route timeout runs from the end of the client's request: a request
    // without a body is complete now, one with a body once it was sent.
    if (body === null) this.startRouteTimer();
    this.send();
  }

  get bodyBuffered(): boolean {
    return this.buffered !== null;
  }

  /** A body of unknown length (chunked) streams: it could outgrow the limit. */
  private keepsBody(body: IncomingMessage): boolean {
    if (!mayResendBody(this.policy, this.idempotent)) return false;
    const length = body.headers['content-length'];
    return length !== undefined && Number(length) <= this.policy.bufferLimit;
  }

  private bufferBody(body: IncomingMessage): void {
    const chunks: Buffer[] = [];
    body.on('data', (chunk: Buffer) => chunks.push(chunk));
    body.once('end', () => {
      // A client that left meanwhile finished the exchange.
      if (this.ex.done) return;
      this.buffered = Buffer.concat(chunks);
      this.ex.bytesIn = this.buffered.length;
      this.startRouteTimer();
      this.send();
    });
  }

  /**
   * The exchange is over (response finished, or the client went away): stop
   * everything still running upstream, then give the cluster its verdict.
   */
  end(): void {
    this.stopTimers();
    this.stopRetries?.abort(CLIENT_GONE);
    this.attempt?.cancel(CLIENT_GONE);
    this.releaseRetrySlot();
    if (!this.admitted) return;
    this.admitted = false;
    leaveCluster(this.cluster, this.verdict());
  }

  /**
   * For the error-rate breaker: a 5xx (the upstream's or tandem's own) or a
   * response cut mid-body is a failure; a client that left before any answer
   * gives no verdict.
   */
  private verdict(): boolean | null {
    const res = this.ex.res;
    if (!res.headersSent) return null;
    if (res.statusCode >= 500) return false;
    const flags = this.ex.flags;
    return flags === null || !(flags.includes('UR') || flags.includes('UT'));
  }

  attemptStarted(): void {
    this.cluster.limits.pending--;
  }

  requestSent(): void {
    if (this.routeTimer === null && !this.expired) this.startRouteTimer();
  }

  retriesStatus(status: number, retryAfter: string | string[] | undefined): boolean {
    const p = this.policy;
    if (!p.onStatus || !retriesOnStatus(p, status)) return false;
    if (this.nextStep('status', status) !== null) {
      this.retryAfter = retryAfter === undefined ? null : this.honouredRetryAfter(retryAfter);
      return true;
    }
    // Exhausted only when some retry was made: a POST never retried is not.
    if (this.retriesUsed > 0) this.ex.flag('URX');
    return false;
  }

  attemptFailed(attempt: Attempt, failure: Failure, status: number): void {
    // a discarded 4xx (a retriable-status-codes match) is no fault of the endpoint's
    this.endTry(attempt, status, failure !== 'status' || status >= 500);
    // Decided (and a retry slot taken) now, synchronously: another request
    // could take the last slot before the retry loop runs.
    const next = this.ex.done ? null : this.nextStep(failure, status, attempt.answeredMalformed);
    if (next === 'counted' && !this.cluster.limits.beginRetry()) return this.settle({ failure, status, next: null, retryAfter: null });
    if (next === 'counted') this.holdsRetrySlot = true;
    const retryAfter = failure === 'status' ? this.retryAfter : null;
    this.retryAfter = null;
    this.settle({ failure, status, next, retryAfter });
  }

  /** Hands a failed try's result to the retry loop, or starts the loop, or gives up. */
  private settle(result: TryResult): void {
    if (this.settleTry !== null) {
      const settle = this.settleTry;
      this.settleTry = null;
      settle(result);
      return;
    }
    if (this.ex.done) return;
    if (result.next !== null) void this.retry(result);
    else this.giveUp(result);
  }

  attemptEnded(attempt: Attempt, clean: boolean): void {
    const status = this.ex.res.statusCode;
    this.endTry(attempt, status, !clean || status >= 500);
    this.stopTimers();
    if (this.settleTry !== null) {
      const settle = this.settleTry;
      this.settleTry = null;
      settle(null);
    }
  }

  bodyTooLarge(attempt: Attempt): void {
    // answers with connection close: the rest of the body is never read
    this.ex.fail('payload_too_large', undefined, true);
    this.endTry(attempt, 413, null);
    this.stopTimers();
  }

  private send(): void {
    const ex = this.ex;
    const endpoint = this.cluster.cluster.pick(ex, ex.endpoint ?? undefined);
    if (endpoint === undefined) {
      this.stopTimers();
      this.settleTry = null;
      ex.fail('no_healthy_upstream', 'UH');
      return;
    }
    ex.endpoint = endpoint;
    ex.attempts++;
    endpoint.begin();
    this.cluster.metrics.activeInc();
    this.cluster.limits.pending++;
    const attempt = new Attempt(ex, this, endpoint);
    this.attempt = attempt;
    const tries = this.route.tryDeadlines;
    if (tries !== null) this.tryTimer = tries.add(onTryTimeout, attempt);
    endpoint.pool.dispatch(
      { path: this.path, method: this.method, headers: this.headers, body: this.buffered ?? this.body },
      attempt,
    );
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
    const c = this.cluster;
    const ms = performance.now() - attempt.startedHr;
    this.ex.upstreamMs = Math.round(ms * 1000) / 1000;
    attempt.endpoint.end();
    if (!attempt.started) c.limits.pending--;
    c.metrics.activeDec();
    c.metrics.attempt(status, ms / 1000);
    if (c.outlier !== null && failed !== null && !this.ex.done) c.outlier.report(attempt.endpoint, failed);
    this.releaseRetrySlot();
    if (this.attempt === attempt) this.attempt = null;
  }

  private releaseRetrySlot(): void {
    if (this.holdsRetrySlot) {
      this.holdsRetrySlot = false;
      this.cluster.limits.endRetry();
    }
  }

  /** What may follow this failure: a free retry, a counted one (within the policy and the cluster's maxRetries), or nothing. */
  private nextStep(failure: Failure, status: number, answeredMalformed = false): Next {
    if (this.expired || this.ex.done || !this.bodyReplayable()) return null;
    if (!answeredMalformed && this.freeRetryAllowed(failure)) return 'free';
    if (this.retriesUsed >= this.policy.attempts || !allowsRetry(this.policy, failure, status, this.idempotent)) return null;
    return this.cluster.limits.retryAvailable ? 'counted' : null;
  }

  /** Retry-After is the backoff when the route's time left allows it; else the usual backoff applies. */
  private honouredRetryAfter(value: string | string[]): number | null {
    const ms = retryAfterMs(Array.isArray(value) ? value[0]! : value);
    if (ms === null) return null;
    const left = this.route.timeout === 0 ? Infinity : this.route.timeout - (performance.now() - this.ex.startedHr);
    return ms < left ? ms : null;
  }

  /**
   * An idempotent request reset before any response byte is retried once,
   * whatever the policy, and not counted as a retry: the usual cause is an
   * upstream closing an idle keep-alive connection as we reused it.
   */
  private freeRetryAllowed(failure: Failure): boolean {
    return failure === 'reset' && !this.freeRetryUsed && this.idempotent;
  }

  private bodyReplayable(): boolean {
    return this.body === null || this.buffered !== null || !this.body.readableDidRead;
  }

  private async retry(first: TryResult): Promise<void> {
    let last = first;
    const stop = new AbortController();
    this.stopRetries = stop;
    try {
      await pRetry(
        async () => {
          if (last.next === 'free') {
            this.freeRetryUsed = true;
          } else {
            this.retriesUsed++;
            this.cluster.metrics.retry();
            const delay = last.retryAfter ?? backoffDelay(this.policy, this.retriesUsed);
            await sleep(delay, undefined, { signal: stop.signal });
          }
          const result = await new Promise<TryResult | null>((resolve) => {
            this.settleTry = resolve;
            this.send();
          });
          if (result !== null) {
            last = result;
            throw new TryFailed(result);
          }
        },
        {
          retries: this.policy.attempts + 1,
          minTimeout: 0,
          maxTimeout: 0,
          signal: stop.signal,
          shouldRetry: ({ error }) => error instanceof TryFailed && last.next !== null,
        },
      );
    } catch (err) {
      if (err instanceof TryFailed && !this.ex.done) this.giveUp(last);
    } finally {
      this.stopRetries = null;
    }
  }

  private giveUp(result: TryResult): void {
    this.stopTimers();
    const ex = this.ex;
    if (this.retriesUsed > 0) ex.flag('URX');
    // A body the upstream did not take entirely is still on the client's
    // connection: it cannot carry another request.
    const close = this.body !== null && !this.body.complete;
    switch (result.failure) {
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
    const deadlines = this.route.routeDeadlines;
    if (deadlines !== null) this.routeTimer = deadlines.add<Forward>(onRouteTimeout, this);
  }

  /** The route timeout fired: no further try, 504 or an aborted response. */
  expire(): void {
    this.routeTimer = null;
    this.expired = true;
    const ex = this.ex;
    ex.flag('UT');
    const attempt = this.attempt;
    if (attempt !== null) {
      attempt.cancel(ROUTE_TIMEOUT);
      return;
    }
    // Between two tries (backoff): nothing upstream to cancel.
    this.stopRetries?.abort(ROUTE_TIMEOUT);
    this.releaseRetrySlot();
    if (!ex.done) this.giveUp({ failure: 'timeout', status: 504, next: null, retryAfter: null });
  }

  private stopTimers(): void {
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
