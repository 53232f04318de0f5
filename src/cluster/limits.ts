// The first of a cluster's two breakers: concurrency limits, always on
// (CONTRACT §2 circuitBreaker.maxRequests / maxPendingRequests / maxRetries,
// Envoy's circuit_breakers thresholds, and its retry budget). Counters in
// memory shared by every worker (src/workers/shared-state.ts), checked on
// every request: a request over a limit is refused at once with 503
// `overflow`, without touching the upstream. The error-rate breaker
// (breaker.ts) is the other, separate kind.

import type { CircuitBreakerConfig, RetryBudgetConfig } from '../config/types.js';
import type { WorkerSlot } from '../workers/shared-state.js';

const ACTIVE = 0;
const RETRIES = 1;
const PENDING = 2;
const COUNTERS = 3;

/**
 * Bytes of a cluster's counters for `workers` workers: a row of tandem-wide
 * totals, then a row per worker of its own share. Pending tries have no
 * total: only admit() reads them, as the sum of the shares, so that the two
 * changes of every try stay plain writes. Padded to 8 so that what follows
 * in the same buffer may hold Float64s.
 */
export function limitsBytes(workers: number): number {
  return Math.ceil(((workers + 1) * COUNTERS * 4) / 8) * 8;
}

/**
 * A worker is gone (crashed, or ended): takes its share out of the totals
 * and zeroes it, so that what its requests held is free again and its
 * replacement starts from nothing.
 */
export function releaseWorkerLimits(buffer: SharedArrayBuffer, byteOffset: number, worker: number): void {
  const counts = countsOf(buffer, byteOffset, worker);
  const own = (worker + 1) * COUNTERS;
  Atomics.sub(counts, ACTIVE, Atomics.exchange(counts, own + ACTIVE, 0));
  Atomics.sub(counts, RETRIES, Atomics.exchange(counts, own + RETRIES, 0));
  Atomics.store(counts, own + PENDING, 0);
}

/** The totals and the shares of workers up to `worker`. */
function countsOf(buffer: SharedArrayBuffer, byteOffset: number, worker: number): Int32Array {
  return new Int32Array(buffer, byteOffset, (worker + 2) * COUNTERS);
}

/**
 * One worker's view of its cluster's counters. A limit is checked against
 * the totals with one atomic add that is taken back when it went over, so
 * two workers can never both take the last place. The worker's own share
 * has a single writer, this object: plain writes are enough for it, read by
 * the others' admit() (pending) and once the worker is gone
 * (releaseWorkerLimits).
 */
export class ConcurrencyLimits {
  private readonly counts: Int32Array;
  private readonly own: number;
  /** index just past the last worker's row */
  private readonly end: number;

  constructor(
    private readonly cfg: CircuitBreakerConfig,
    private readonly budget: RetryBudgetConfig,
    buffer: SharedArrayBuffer,
    byteOffset: number,
    slot: WorkerSlot,
  ) {
    this.counts = countsOf(buffer, byteOffset, slot.count - 1);
    this.own = (slot.index + 1) * COUNTERS;
    this.end = (slot.count + 1) * COUNTERS;
  }

  /** this worker's requests admitted and not finished */
  get active(): number {
    return this.counts[this.own + ACTIVE]!;
  }

  /** this worker's tries handed to a pool that have not got a connection yet */
  get pending(): number {
    return this.counts[this.own + PENDING]!;
  }

  /** this worker's retries (after the first try) in flight */
  get retries(): number {
    return this.counts[this.own + RETRIES]!;
  }

  /** Admits a new request, or refuses it (false) when the cluster is full. */
  admit(): boolean {
    const c = this.counts;
    let pending = 0;
    for (let i = COUNTERS + PENDING; i < this.end; i += COUNTERS) pending += c[i]!;
    if (pending >= this.cfg.maxPendingRequests) return false;
    if (Atomics.add(c, ACTIVE, 1) >= this.cfg.maxRequests) {
      Atomics.sub(c, ACTIVE, 1);
      return false;
    }
    c[this.own + ACTIVE]!++;
    return true;
  }

  release(): void {
    Atomics.sub(this.counts, ACTIVE, 1);
    this.counts[this.own + ACTIVE]!--;
  }

  /** A try waits for a connection (counted against maxPendingRequests). */
  queue(): void {
    this.counts[this.own + PENDING]!++;
  }

  unqueue(): void {
    this.counts[this.own + PENDING]!--;
  }

  /**
   * May one more retry start now? Only under `maxRetries` and under the
   * retry budget: a share of the requests in flight tandem-wide (a retrying
   * request is one of them), never below `minConcurrency`. Otherwise the
   * retry is skipped and the last answer goes back (docs/resilience.md).
   */
  beginRetry(): boolean {
    const c = this.counts;
    const budget = Math.max(this.budget.minConcurrency, Math.floor((this.budget.percent * Atomics.load(c, ACTIVE)) / 100));
    if (Atomics.add(c, RETRIES, 1) >= Math.min(budget, this.cfg.maxRetries)) {
      Atomics.sub(c, RETRIES, 1);
      return false;
    }
    c[this.own + RETRIES]!++;
    return true;
  }

  endRetry(): void {
    Atomics.sub(this.counts, RETRIES, 1);
    this.counts[this.own + RETRIES]!--;
  }
}
