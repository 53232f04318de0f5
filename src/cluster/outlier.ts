import { after, cancel, now, type Timer } from '../clock.js';
import type { OutlierDetectionConfig } from '../config/types.js';
import type { Endpoint } from './endpoint.js';

/** Envoy's default `max_ejection_time`: a flapping endpoint is never out longer than this (or base, if longer) */
const MAX_EJECTION_TIME_MS = 300_000;
/** setTimeout fires at once for longer delays */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What the detector remembers about one endpoint between reports. */
interface EndpointState {
  readonly endpoint: Endpoint;
  consecutiveFailures: number;
  /** the ejection-time multiplier: how many recent ejections, decayed while in rotation */
  ejections: number;
  /** now() when the endpoint last came back into rotation */
  returnedAt: number;
  timer: Timer | undefined;
  /** built once so an ejection does not allocate a closure */
  readonly restore: () => void;
}

/**
 * Passive health checking per endpoint, after Envoy's consecutive-5xx outlier
 * detection: `consecutive5xx` failed tries in a row take an endpoint out of
 * rotation for `baseEjectionTime × n`, n being its ejection multiplier.
 *
 * Multiplier decay: Envoy decrements the multiplier on each sweep `interval`
 * in which the host is not ejected. tandem has no sweep, so the decay is
 * computed when the endpoint is next ejected: every whole `baseEjectionTime`
 * it spent in rotation since it last came back takes one off, never below 0.
 * A flapping endpoint thus stays out longer each time, one that recovered for
 * long enough starts again from `baseEjectionTime`. As in Envoy with its
 * default `max_ejection_time`, the multiplier stops growing once an ejection
 * lasts max(300 s, baseEjectionTime).
 */
export class OutlierDetector {
  private readonly states = new Map<Endpoint, EndpointState>();
  private maxEjected = 0;
  private readonly longestEjection: number;
  private readonly maxMultiplier: number;
  private ejectedCount = 0;
  private closed = false;

  /** `onEject(endpoint)` is called on each ejection (for tandem_outlier_ejections_total and logs) */
  constructor(
    private readonly cfg: OutlierDetectionConfig,
    endpoints: readonly Endpoint[],
    private readonly onEject: (e: Endpoint) => void,
  ) {
    this.longestEjection = Math.min(MAX_TIMER_MS, Math.max(MAX_EJECTION_TIME_MS, cfg.baseEjectionTime));
    this.maxMultiplier = Math.ceil(this.longestEjection / cfg.baseEjectionTime);
    this.setEndpoints(endpoints);
  }

  /**
   * Follows a new endpoint list (DNS discovery): endpoints that stay keep
   * their counts, multipliers and running ejections; new ones start afresh;
   * removed ones are forgotten, their ejection no longer counting against the cap.
   */
  setEndpoints(endpoints: readonly Endpoint[]): void {
    const keep = new Set(endpoints);
    for (const [endpoint, state] of this.states) {
      if (keep.has(endpoint)) continue;
      if (state.timer !== undefined) {
        cancel(state.timer);
        this.ejectedCount--;
      }
      this.states.delete(endpoint);
    }
    const returnedAt = now();
    for (const endpoint of endpoints) {
      if (this.states.has(endpoint)) continue;
      const state: EndpointState = {
        endpoint,
        consecutiveFailures: 0,
        ejections: 0,
        returnedAt,
        timer: undefined,
        restore: () => this.restore(state),
      };
      this.states.set(endpoint, state);
    }
    // Envoy ejects a host only while (ejected + 1) / hosts stays within
    // max_ejection_percent. Its docs long promised to "eject at least one host
    // regardless of the value" (now the opt-in `always_eject_one_host`);
    // tandem keeps that promise: at most max(1, floor(hosts × pct / 100)) are out at once.
    this.maxEjected = Math.max(1, Math.floor((endpoints.length * this.cfg.maxEjectionPercent) / 100));
  }

  /** the outcome of each try at an endpoint: failed = 5xx response, connect failure, reset or timeout. Hot path: O(1), no allocation. */
  report(endpoint: Endpoint, failed: boolean): void {
    const state = this.states.get(endpoint);
    // Tries that were in flight when the endpoint was ejected say nothing new:
    // its count starts again from zero when it returns, as in Envoy.
    if (state === undefined || state.timer !== undefined || this.closed) return;
    if (!failed) {
      state.consecutiveFailures = 0;
      return;
    }
    state.consecutiveFailures++;
    // Over the cap the count keeps growing, so the next failure ejects as soon as there is room.
    if (state.consecutiveFailures >= this.cfg.consecutive5xx && this.ejectedCount < this.maxEjected) {
      this.eject(state);
    }
  }

  /** clears every un-ejection timer (endpoints stay as they are) */
  close(): void {
    this.closed = true;
    for (const state of this.states.values()) {
      cancel(state.timer);
      state.timer = undefined;
    }
  }

  private eject(state: EndpointState): void {
    const base = this.cfg.baseEjectionTime;
    const inRotation = now() - state.returnedAt;
    const decayed = Math.max(0, state.ejections - Math.floor(inRotation / base));
    state.ejections = Math.min(this.maxMultiplier, decayed + 1);
    state.timer = after(Math.min(this.longestEjection, base * state.ejections), state.restore);
    state.endpoint.ejected = true;
    this.ejectedCount++;
    this.onEject(state.endpoint);
  }

  private restore(state: EndpointState): void {
    state.timer = undefined;
    state.consecutiveFailures = 0;
    state.returnedAt = now();
    state.endpoint.ejected = false;
    this.ejectedCount--;
  }
}
