import type { Endpoint } from '../endpoint.js';
import { fallbackTo, type LoadBalancer, type PickContext } from './types.js';
import { WeightedRandom } from './weighted-random.js';

/**
 * Power of two choices: draw two distinct available endpoints by weight and
 * keep the cheaper one. A tie keeps the first draw, so endpoints of equal
 * cost share traffic in proportion to their weights.
 */
export abstract class TwoChoicesBalancer implements LoadBalancer {
  private readonly random: WeightedRandom;

  constructor(endpoints: readonly Endpoint[]) {
    this.random = new WeightedRandom(endpoints);
  }

  pick(_ctx: PickContext, exclude?: Endpoint): Endpoint | undefined {
    const first = this.random.pick(exclude);
    if (first === undefined) return fallbackTo(exclude);
    const second = this.random.pick(exclude, first);
    if (second === undefined) return first;
    return this.cheaper(second, first) ? second : first;
  }

  /** Whether `a` costs strictly less than `b`. */
  protected abstract cheaper(a: Endpoint, b: Endpoint): boolean;
}
