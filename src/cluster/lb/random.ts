import type { Endpoint } from '../endpoint.js';
import { fallbackTo, type LoadBalancer, type PickContext } from './types.js';
import { WeightedRandom } from './weighted-random.js';

export class RandomBalancer implements LoadBalancer {
  private readonly random: WeightedRandom;

  constructor(endpoints: readonly Endpoint[]) {
    this.random = new WeightedRandom(endpoints);
  }

  pick(_ctx: PickContext, exclude?: Endpoint): Endpoint | undefined {
    return this.random.pick(exclude) ?? fallbackTo(exclude);
  }
}
