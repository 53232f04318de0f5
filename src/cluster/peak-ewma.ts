import { now as clockNow } from '../clock.js';

/** Linkerd's default decay: how fast a latency peak is forgotten. */
export const DECAY_MS = 10_000;

/**
 * An endpoint's latency estimate for peak EWMA balancing (Finagle's and
 * Linkerd's "peak EWMA"). The estimate decays exponentially towards 0 with
 * time constant DECAY_MS, and a try slower than the decayed estimate lifts
 * it to that try's latency at once: one slow answer is enough to steer
 * traffic away, and an endpoint answering steadily in L ms holds near L.
 * Finagle and Linkerd decay the estimate each time they read it (an
 * average with a 0 sample weighted by the time since the last read), so a
 * faster try barely moves it there; here the decay is a function of time
 * alone, which gives the same estimate without depending on how often the
 * balancer looks. The decay also brings an endpoint that lost its traffic
 * to a peak back into play once its estimate falls below its peers', and
 * its next answer says whether it recovered. Times are milliseconds on
 * the clock of src/clock.ts.
 */
export class PeakEwma {
  private estimate = 0;
  private stamp = 0;

  /** Records a try that took `ms`, ending at `now`. */
  observe(ms: number, now: number = clockNow()): void {
    const decayed = this.at(now);
    this.estimate = ms > decayed ? ms : decayed;
    this.stamp = now;
  }

  /** The estimate at `now`; 0 before the first sample. */
  at(now: number): number {
    if (this.estimate === 0) return 0;
    return this.estimate * Math.exp(-Math.max(0, now - this.stamp) / DECAY_MS);
  }
}
