import { after, cancel, sharedNow, type Timer } from '../clock.js';
import type { CircuitBreakerConfig } from '../config/types.js';
import type { WorkerSlot } from '../workers/shared-state.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

/**
 * Outcomes expire a bucket at a time: one ages out between 9/10 of `window`
 * and `window` after it was recorded, never later (Hystrix-style buckets).
 */
const WINDOW_BUCKETS = 10;

// The low two bits of the shared state word; the bits above count the
// transitions, so that a compare-and-swap from a word read earlier fails
// once anything happened in between.
const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;
/** half-open with its one trial request out */
const TRIAL = 3;
const STATES: readonly BreakerState[] = ['closed', 'open', 'half_open', 'half_open'];

// Layout of a breaker's part of its cluster's shared buffer: two Float64s,
// then Int32s: the state word, the worker holding the trial, then per worker
// its window buckets, each (closed word it counts for, bucket number,
// successes, failures).
const ORIGIN = 0;
const OPENED_AT = 1;
const WORD = 4;
const TRIAL_OWNER = 5;
const BUCKETS = 6;
const BUCKET = 4;
const PER_WORKER = WINDOW_BUCKETS * BUCKET;

export function breakerBytes(workers: number): number {
  return (BUCKETS + workers * PER_WORKER) * 4;
}

/** A fresh breaker's shared part: closed, its window buckets counted from now. */
export function initBreaker(buffer: SharedArrayBuffer, byteOffset: number): void {
  new Float64Array(buffer, byteOffset, 2)[ORIGIN] = sharedNow();
}

/** A worker is gone: the trial it held (if it did) is out no more, so another worker may send one. */
export function releaseWorkerTrial(buffer: SharedArrayBuffer, byteOffset: number, worker: number): void {
  const shared = new Int32Array(buffer, byteOffset, BUCKETS);
  const w = Atomics.load(shared, WORD);
  if ((w & 3) === TRIAL && Atomics.load(shared, TRIAL_OWNER) === worker + 1) {
    Atomics.compareExchange(shared, WORD, w, (w & ~3) | HALF_OPEN);
  }
}

/** The state every worker sees, read from the shared buffer alone (for a thread that holds no breaker). */
export function sharedBreakerState(buffer: SharedArrayBuffer, byteOffset: number): BreakerState {
  return STATES[Atomics.load(new Int32Array(buffer, byteOffset, BUCKETS), WORD) & 3]!;
}

/**
 * CONTRACT §2 error-rate breaker, one per cluster for the whole tandem:
 * every worker holds one of these over the same shared memory
 * (src/workers/shared-state.ts), so a failure any worker sees counts for
 * all, the breaker opens and closes for all at once, and one trial goes out
 * tandem-wide while half-open. No messages, no locks: the state is one
 * Int32 changed only by compare-and-swap.
 *
 * - Closed: each worker counts its verdicts in its own window buckets
 *   (single writer); after every verdict the buckets of all workers are
 *   summed and the rule applied: at least `volumeThreshold` finished
 *   requests in `window` and a failed share strictly over
 *   `errorThresholdPercentage`. Buckets are tagged with the closed phase
 *   they count for, so closing again starts from an empty window.
 * - Open: refused. Every worker that sees the breaker open sets its own
 *   timer for `resetTimeout` after the shared opening time; the first to
 *   fire moves it to half-open.
 * - Half-open: the first allow() from any worker takes the trial; its
 *   worker's next verdict closes or reopens the breaker, or (no verdict)
 *   frees the trial for another request.
 *
 * opossum, which this replaced, keeps its state, window and reset timer in
 * one process's memory: each worker's copy would open on its own failures
 * only. Kept as the state machine of every worker, driven from shared
 * memory, it would still need this code to decide and time everything.
 *
 * Corner the boolean API cannot resolve: a request let through before the
 * breaker opened that ends, on the worker holding the trial, while the trial
 * is out is taken as the trial's verdict (it is a real, recent outcome of
 * the upstream). With the default route timeout (15s) under the default
 * resetTimeout (30s) only long-lived requests can do that. Outcomes ending
 * while open, or half-open on a worker without the trial, are ignored.
 */
export class ErrorRateBreaker {
  private readonly times: Float64Array;
  private readonly shared: Int32Array;
  private readonly resetTimeout: number;
  private readonly bucketMs: number;
  private readonly volumeThreshold: number;
  private readonly errorThresholdPercentage: number;
  private readonly workers: number;
  /** index of this worker's first window bucket */
  private readonly own: number;
  private readonly me: number;
  /** the state word this worker last acted on */
  private seen = CLOSED;
  private current: BreakerState = 'closed';
  /** the word of the trial this worker holds, or -1 */
  private trialWord = -1;
  private resetTimer: Timer | undefined;
  private closedForGood = false;

  constructor(
    cfg: CircuitBreakerConfig & { errorThresholdPercentage: number },
    private readonly onStateChange: (state: BreakerState) => void,
    buffer: SharedArrayBuffer,
    byteOffset: number,
    slot: WorkerSlot,
  ) {
    this.resetTimeout = cfg.resetTimeout;
    this.bucketMs = Math.max(1, Math.floor(cfg.window / WINDOW_BUCKETS));
    this.volumeThreshold = cfg.volumeThreshold;
    this.errorThresholdPercentage = cfg.errorThresholdPercentage;
    this.workers = slot.count;
    this.times = new Float64Array(buffer, byteOffset, 2);
    this.shared = new Int32Array(buffer, byteOffset, breakerBytes(slot.count) / 4);
    this.own = BUCKETS + slot.index * PER_WORKER;
    this.me = slot.index + 1;
    // a worker started while the breaker is open (a replacement) joins it
    this.sync(Atomics.load(this.shared, WORD));
  }

  /** The shared state, caught up with (and the metric told) when another worker changed it. */
  get state(): BreakerState {
    const w = Atomics.load(this.shared, WORD);
    if (w !== this.seen) this.sync(w);
    return this.current;
  }

  allow(): boolean {
    const w = Atomics.load(this.shared, WORD);
    if (w !== this.seen) this.sync(w);
    const state = w & 3;
    if (state === CLOSED) return true;
    if (state !== HALF_OPEN || Atomics.compareExchange(this.shared, WORD, w, w | TRIAL) !== w) return false;
    Atomics.store(this.shared, TRIAL_OWNER, this.me);
    this.trialWord = w | TRIAL;
    return true;
  }

  record(ok: boolean | null): void {
    if (this.closedForGood) return;
    const w = Atomics.load(this.shared, WORD);
    if (w !== this.seen) this.sync(w);
    if ((w & 3) === CLOSED) {
      if (ok === null) return;
      this.count(w, ok);
      if (this.tripped(w)) this.move(w, OPEN);
      return;
    }
    if (w !== this.trialWord) return;
    this.trialWord = -1;
    if (ok === null) Atomics.compareExchange(this.shared, WORD, w, (w & ~3) | HALF_OPEN);
    else this.move(w, ok ? CLOSED : OPEN);
  }

  /** This worker's breaker is retired: its timer stops, the shared state stays as the other workers left it. */
  close(): void {
    this.closedForGood = true;
    cancel(this.resetTimer);
  }

  /** From word `w` to `state`, unless another worker moved it first. */
  private move(w: number, state: number): void {
    if (state === OPEN) this.times[OPENED_AT] = sharedNow();
    Atomics.compareExchange(this.shared, WORD, w, (((w >>> 2) + 1) << 2) | state);
    this.sync(Atomics.load(this.shared, WORD));
  }

  /** Follows the shared word: this worker's state, its state-change callback and its reset timer. */
  private sync(w: number): void {
    if (this.closedForGood) return;
    this.seen = w;
    cancel(this.resetTimer);
    this.resetTimer = undefined;
    if ((w & 3) === OPEN) {
      const wait = this.times[OPENED_AT]! + this.resetTimeout - sharedNow();
      this.resetTimer = after(Math.max(0, wait), () => this.move(w, HALF_OPEN));
    }
    const state = STATES[w & 3]!;
    if (state === this.current) return;
    this.current = state;
    this.onStateChange(state);
  }

  private bucketNumber(): number {
    return Math.floor((sharedNow() - this.times[ORIGIN]!) / this.bucketMs) | 0;
  }

  /**
   * Counts a verdict in this worker's bucket of now, reusing the bucket if
   * it still holds an older one. This worker is the buckets' only writer, so
   * plain writes do; a reader in another thread that catches a bucket being
   * reused sees at worst an outcome fewer for a moment.
   */
  private count(w: number, ok: boolean): void {
    const s = this.shared;
    const n = this.bucketNumber();
    const b = this.own + ((n >>> 0) % WINDOW_BUCKETS) * BUCKET;
    if (s[b] !== w || s[b + 1] !== n) {
      s[b + 2] = 0;
      s[b + 3] = 0;
      s[b + 1] = n;
      s[b] = w;
    }
    s[ok ? b + 2 : b + 3]!++;
  }

  private tripped(w: number): boolean {
    const s = this.shared;
    const n = this.bucketNumber();
    let failures = 0;
    let finished = 0;
    const end = BUCKETS + this.workers * PER_WORKER;
    for (let b = BUCKETS; b < end; b += BUCKET) {
      const age = (n - s[b + 1]!) | 0;
      if (s[b] !== w || age < 0 || age >= WINDOW_BUCKETS) continue;
      const f = s[b + 3]!;
      failures += f;
      finished += f + s[b + 2]!;
    }
    // Cross-multiplied: 7/25*100 is 28.000000000000004 in floating point,
    // which would count an exactly-at-threshold share as over it.
    return finished >= this.volumeThreshold && failures * 100 > this.errorThresholdPercentage * finished;
  }
}
