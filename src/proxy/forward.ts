// Sends a routed request upstream: the first try directly (the hot path
// allocates no promise), later tries through p-retry with full-jitter
// backoff. Owns the route and per-try timers and the cancellation when the
// client goes away.

import { setTimeout as sleep } from 'node:timers/promises';
import type { IncomingMessage } from 'node:http';
import pRetry from 'p-retry';
import type { ClusterRuntime, CompiledRoute } from '../snapshot-types.js';
import { Attempt, timeoutReason, type AttemptOwner, type Failure } from './attempt.js';
import type { Exchange } from './exchange.js';
import { allowsRetry, backoffDelay, isIdempotent, mayResendBody, retriesOnStatus, type RetryPolicy } from './retry-policy.js';

interface TryResult {
  failure: Failure;
  status: number;
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
  private routeTimer: NodeJS.Timeout | null = null;
  private tryTimer: NodeJS.Timeout | null = null;
  private retriesUsed = 0;
  private freeRetryUsed = false;
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

  /** The client went away: stop everything upstream. */
  abandon(): void {
    this.stopTimers();
    this.stopRetries?.abort(CLIENT_GONE);
    this.attempt?.cancel(CLIENT_GONE);
  }

  requestSent(): void {
    if (this.routeTimer === null && !this.expired) this.startRouteTimer();
  }

  retriesStatus(status: number): boolean {
    const p = this.policy;
    if (!p.onStatus || !retriesOnStatus(p, status)) return false;
    if (this.mayRetry('status', status)) return true;
    // Exhausted only when some retry was made: a POST never retried is not.
    if (this.retriesUsed > 0) this.ex.flag('URX');
    return false;
  }

  attemptFailed(attempt: Attempt, failure: Failure, status: number): void {
    this.endTry(attempt, status);
    const result = { failure, status };
    if (this.settleTry !== null) {
      const settle = this.settleTry;
      this.settleTry = null;
      settle(result);
      return;
    }
    if (this.ex.done) return;
    if (this.mayRetry(failure, status)) void this.retry(result);
    else this.giveUp(result);
  }

  attemptEnded(attempt: Attempt): void {
    this.endTry(attempt, this.ex.res.statusCode);
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
    this.attemptEnded(attempt);
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
    const attempt = new Attempt(ex, this, endpoint);
    this.attempt = attempt;
    const perTry = this.policy.perTryTimeout;
    if (perTry > 0 && (this.route.timeout === 0 || perTry < this.route.timeout)) {
      this.tryTimer = setTimeout(onTryTimeout, perTry, attempt);
    }
    endpoint.pool.dispatch(
      { path: this.path, method: this.method, headers: this.headers, body: this.buffered ?? this.body },
      attempt,
    );
  }

  private endTry(attempt: Attempt, status: number): void {
    if (this.tryTimer !== null) {
      clearTimeout(this.tryTimer);
      this.tryTimer = null;
    }
    const ms = performance.now() - attempt.startedHr;
    this.ex.upstreamMs = Math.round(ms * 1000) / 1000;
    attempt.endpoint.end();
    this.cluster.metrics.activeDec();
    this.cluster.metrics.attempt(status, ms / 1000);
    if (this.attempt === attempt) this.attempt = null;
  }

  /** May one more try follow this failure? */
  private mayRetry(failure: Failure, status: number): boolean {
    if (this.expired || this.ex.done || !this.bodyReplayable()) return false;
    if (this.freeRetryAllowed(failure)) return true;
    return this.retriesUsed < this.policy.attempts && allowsRetry(this.policy, failure, status, this.idempotent);
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
          if (this.freeRetryAllowed(last.failure)) {
            this.freeRetryUsed = true;
          } else {
            this.retriesUsed++;
            this.cluster.metrics.retry();
            await sleep(backoffDelay(this.policy, this.retriesUsed), undefined, { signal: stop.signal });
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
          shouldRetry: ({ error }) => error instanceof TryFailed && this.mayRetry(last.failure, last.status),
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
    if (this.route.timeout > 0) this.routeTimer = setTimeout(onRouteTimeout, this.route.timeout, this);
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
    if (!ex.done) this.giveUp({ failure: 'timeout', status: 504 });
  }

  private stopTimers(): void {
    if (this.routeTimer !== null) {
      clearTimeout(this.routeTimer);
      this.routeTimer = null;
    }
    if (this.tryTimer !== null) {
      clearTimeout(this.tryTimer);
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
