// The first of a cluster's two breakers: concurrency limits, always on
// (CONTRACT §2 circuitBreaker.maxRequests / maxPendingRequests / maxRetries,
// Envoy's circuit_breakers thresholds, and its retry budget). Plain
// counters, checked on every request: a request over a limit is refused at
// once with 503 `overflow`, without touching the upstream. The error-rate
// breaker (breaker.ts) is the other, separate kind.

import type { CircuitBreakerConfig, RetryBudgetConfig } from '../config/types.js';

export class ConcurrencyLimits {
  /** requests admitted and not finished */
  active = 0;
  /** tries handed to a pool that have not got a connection yet */
  pending = 0;
  /** retries (after the first try) in flight */
  retries = 0;

  constructor(
    private readonly cfg: CircuitBreakerConfig,
    private readonly budget: RetryBudgetConfig,
  ) {}

  /** Admits a new request, or refuses it (false) when the cluster is full. */
  admit(): boolean {
    if (this.active >= this.cfg.maxRequests || this.pending >= this.cfg.maxPendingRequests) return false;
    this.active++;
    return true;
  }

  release(): void {
    this.active--;
  }

  /**
   * May one more retry start now? Only under `maxRetries` and under the
   * retry budget: a share of the requests in flight (a retrying request is
   * one of them), never below `minConcurrency`. Otherwise the retry is
   * skipped and the last answer goes back (docs/resilience.md).
   */
  beginRetry(): boolean {
    const budget = Math.max(this.budget.minConcurrency, Math.floor((this.budget.percent * this.active) / 100));
    if (this.retries >= budget || this.retries >= this.cfg.maxRetries) return false;
    this.retries++;
    return true;
  }

  endRetry(): void {
    this.retries--;
  }
}
