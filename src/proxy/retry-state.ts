// The one owner of a request's retry decisions, as Envoy's RetryState: it
// sees each failed try and answers what follows. It owns the request's
// retry count, its free retry, its slot among the cluster's retries in
// flight and its backoff timer. Made at a request's first failed try, so a
// request answered by its first try never allocates one (docs/resilience.md).

import { after, cancel, type Timer } from '../clock.js';
import type { ConcurrencyLimits } from '../cluster/limits.js';
import type { ClusterMetrics } from '../observability/metrics.js';
import { allowsRetry, backoffDelay, type RetryCause, type RetryPolicy } from './retry-policy.js';

/**
 * What follows a failed try: the free retry (now, on a new connection), a
 * retry (after `delay`), nothing (the policy's answer), or nothing because
 * the cluster's retry limits said so.
 */
export type Verdict = 'free' | 'retry' | 'stop' | 'limited';

export interface RetryOwner {
  /** can the request still go out again: client there, time left, body replayable */
  readonly resendable: boolean;
  /** the backoff is over: send the retry */
  resend(): void;
}

export class RetryState {
  /** retries granted (the free retry is not one) */
  retried = 0;
  private freeUsed = false;
  /** the wait before the retry last granted, in ms */
  private delay = 0;
  /** a granted retry holds one of the cluster's retries in flight until its try ends */
  private holdsSlot = false;
  private timer: Timer | null = null;
  private readonly fire = (): void => {
    this.timer = null;
    // counted when sent: a retry whose backoff the route timeout cut is not
    this.metrics.retry();
    this.owner.resend();
  };

  constructor(
    private readonly policy: RetryPolicy,
    private readonly idempotent: boolean,
    private readonly limits: ConcurrencyLimits,
    private readonly metrics: ClusterMetrics,
    private readonly owner: RetryOwner,
  ) {}

  /**
   * A try failed. `stale`: it went out on a reused connection and got no
   * answer at all (the upstream closed an idle keep-alive connection as it
   * was reused). `retryAfter`: the upstream's Retry-After in ms, when it is
   * to be the backoff. A granted retry holds its slot from now, so no other
   * request can take the last slot meanwhile.
   */
  decide(failure: RetryCause, status: number, stale: boolean, retryAfter: number | null): Verdict {
    if (!this.owner.resendable) return this.finish();
    // The free retry is not a retry: neither counted nor budgeted.
    if (stale && failure === 'reset' && this.idempotent && !this.freeUsed) {
      this.freeUsed = true;
      this.releaseSlot();
      return 'free';
    }
    if (this.retried >= this.policy.attempts || !allowsRetry(this.policy, failure, status, this.idempotent)) return this.finish();
    // The slot of a retry whose try just failed is not counted against the next one.
    this.releaseSlot();
    if (!this.limits.beginRetry()) {
      this.metrics.rejected('retry_budget');
      return 'limited';
    }
    this.holdsSlot = true;
    this.retried++;
    this.delay = retryAfter ?? backoffDelay(this.policy, this.retried);
    return 'retry';
  }

  /** Starts the backoff of the retry just granted; `resend` follows unless finished first. */
  wait(): void {
    this.timer = after(this.delay, this.fire);
  }

  /** No further try: the request is answered, given up, timed out or gone. */
  finish(): 'stop' {
    if (this.timer !== null) {
      cancel(this.timer);
      this.timer = null;
    }
    this.releaseSlot();
    return 'stop';
  }

  private releaseSlot(): void {
    if (this.holdsSlot) {
      this.holdsSlot = false;
      this.limits.endRetry();
    }
  }
}
