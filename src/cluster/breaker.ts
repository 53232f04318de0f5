import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import { cancelEvery, every, type Timer } from '../clock.js';
import type { CircuitBreakerConfig } from '../config/types.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

/**
 * Outcomes expire a bucket at a time: one ages out between 9/10 of `window`
 * and `window` after it was recorded, never later (Hystrix-style buckets,
 * opossum's default count).
 */
const WINDOW_BUCKETS = 10;

/**
 * CONTRACT §2 error-rate breaker. opossum owns the state machine (open ->
 * half-open after `resetTimeout`, its reset timer) and the rolling window
 * (its Status buckets); this class feeds it and makes the decision.
 *
 * opossum records outcomes only through `fire(action)`, a promise chain per
 * request (four promises: its own, the action's, then() and catch()), and
 * its own opening rule does not match the contract: it divides failures by
 * `fires`, which counts requests when they start and also the calls it
 * rejected while open, and it only re-evaluates on a failure. So the breaker is never fired: outcomes are
 * emitted as opossum's own 'success'/'failure' events (which are what its
 * Status counts), the volume is successes + failures (finished requests), the
 * rule is checked after every verdict and opossum's `open()`/`close()` apply
 * it. With no fire(), opossum's `timeout` (tandem has its own timers),
 * `volumeThreshold`, `errorThresholdPercentage` and `allowWarmUp` play no
 * part; timeout is still set to false and warm-up left off so that nothing
 * of theirs can run. The half-open trial gate is ours too: opossum's lives
 * inside fire().
 *
 * Cost (micro-benchmark, Node 24, a busy 2-core machine, 90% successes,
 * 100 ms window): allow() + record() ~0.3 us per request; the same outcomes
 * through fire() ~7-25 us (allow() alone is a field compare).
 * Memory: opossum's Status keeps a latency number per outcome in the window
 * (even with percentiles off), ~8 bytes per request in `window`.
 *
 * Corner the boolean API cannot resolve: a request let through before the
 * breaker opened that ends while the half-open trial is out is taken as the
 * trial's verdict (it is a real, recent outcome of the upstream). With the
 * default route timeout (15s) under the default resetTimeout (30s) only
 * long-lived requests can do that. Outcomes ending while open, or half-open
 * with no trial out, are ignored.
 */
export class ErrorRateBreaker {
  private readonly breaker: CircuitBreaker;
  private readonly rotation = new EventEmitter();
  private readonly rotationTimer: Timer;
  private readonly volumeThreshold: number;
  private readonly errorThresholdPercentage: number;
  private current: BreakerState = 'closed';
  private trialInFlight = false;
  private closedForGood = false;

  constructor(
    cfg: CircuitBreakerConfig & { errorThresholdPercentage: number },
    private readonly onStateChange: (state: BreakerState) => void,
  ) {
    this.volumeThreshold = cfg.volumeThreshold;
    this.errorThresholdPercentage = cfg.errorThresholdPercentage;
    this.breaker = new CircuitBreaker(neverFired, {
      timeout: false,
      resetTimeout: cfg.resetTimeout,
      rollingCountTimeout: cfg.window,
      rollingCountBuckets: WINDOW_BUCKETS,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      allowWarmUp: false,
      // Rotating the buckets ourselves lets a closing breaker empty its window
      // (opossum keeps it across a close) and keeps the timer ours to stop.
      rotateBucketController: this.rotation,
    });
    this.rotationTimer = every(Math.max(1, Math.floor(cfg.window / WINDOW_BUCKETS)), () => this.rotation.emit('rotate'));
    this.breaker.on('open', () => this.enter('open'));
    this.breaker.on('halfOpen', () => this.enter('half_open'));
    this.breaker.on('close', () => {
      this.emptyWindow();
      this.enter('closed');
    });
  }

  get state(): BreakerState {
    return this.current;
  }

  allow(): boolean {
    if (this.current === 'closed') return true;
    if (this.current === 'open' || this.trialInFlight) return false;
    this.trialInFlight = true;
    return true;
  }

  record(ok: boolean | null): void {
    if (this.closedForGood) return;
    if (this.current === 'closed') {
      if (ok === null) return;
      this.breaker.emit(ok ? 'success' : 'failure');
      if (this.tripped()) this.breaker.open();
      return;
    }
    if (this.current === 'open' || !this.trialInFlight) return;
    this.trialInFlight = false;
    if (ok === true) this.breaker.close();
    else if (ok === false) this.breaker.open();
  }

  close(): void {
    if (this.closedForGood) return;
    this.closedForGood = true;
    cancelEvery(this.rotationTimer);
    // Clears opossum's reset timer and drops every listener, ours included.
    this.breaker.shutdown();
  }

  private tripped(): boolean {
    let failures = 0;
    let finished = 0;
    for (const bucket of this.breaker.status.window) {
      failures += bucket.failures;
      finished += bucket.failures + bucket.successes;
    }
    // Cross-multiplied: 7/25*100 is 28.000000000000004 in floating point,
    // which would count an exactly-at-threshold share as over it.
    return finished >= this.volumeThreshold && failures * 100 > this.errorThresholdPercentage * finished;
  }

  private emptyWindow(): void {
    for (let i = 0; i < WINDOW_BUCKETS; i++) this.rotation.emit('rotate');
  }

  private enter(state: BreakerState): void {
    this.current = state;
    this.trialInFlight = false;
    this.onStateChange(state);
  }
}

/** opossum requires an action; outcomes reach it as events instead (see above). */
function neverFired(): Promise<never> {
  return Promise.reject(new Error('ErrorRateBreaker records outcomes, it never fires'));
}
