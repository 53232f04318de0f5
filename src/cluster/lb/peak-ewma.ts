import { now as clockNow } from '../../clock.js';
import type { Endpoint } from '../endpoint.js';
import { TwoChoicesBalancer } from './two-choices.js';

/**
 * Two choices, the one with the lower latency estimate × (in-flight
 * requests + 1) (Finagle's and Linkerd's peak EWMA; see
 * src/cluster/peak-ewma.ts). An endpoint with no sample yet costs 0, so a
 * new endpoint is tried at once. Weights bias the draw only. `now` is for
 * tests.
 */
export class PeakEwmaBalancer extends TwoChoicesBalancer {
  constructor(
    endpoints: readonly Endpoint[],
    private readonly now: () => number = clockNow,
  ) {
    super(endpoints);
  }

  protected cheaper(a: Endpoint, b: Endpoint): boolean {
    const now = this.now();
    return cost(a, now) < cost(b, now);
  }
}

function cost(endpoint: Endpoint, now: number): number {
  // Every endpoint of a peak_ewma cluster carries an estimate.
  return endpoint.latency!.at(now) * (endpoint.activeRequests + 1);
}
