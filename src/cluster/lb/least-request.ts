import type { Endpoint } from '../endpoint.js';
import { fallbackTo, type LoadBalancer, type PickContext } from './types.js';
import { WeightedRandom } from './weighted-random.js';

/**
 * Power of two choices: draw two distinct endpoints by weight and keep the
 * one with fewer in-flight requests per unit of weight. A tie keeps the first
 * draw, so idle endpoints share traffic in proportion to their weights.
 */
export class LeastRequestBalancer implements LoadBalancer {
  private readonly random: WeightedRandom;

  constructor(endpoints: readonly Endpoint[]) {
    this.random = new WeightedRandom(endpoints);
  }

  pick(_ctx: PickContext, exclude?: Endpoint): Endpoint | undefined {
    const first = this.random.pick(exclude);
    if (first === undefined) return fallbackTo(exclude);
    const second = this.random.pick(exclude, first);
    if (second === undefined) return first;
    return second.activeRequests / second.weight < first.activeRequests / first.weight ? second : first;
  }
}
