import type { Endpoint } from '../endpoint.js';
import { fallbackTo, type LoadBalancer, type PickContext } from './types.js';

/**
 * Smooth weighted round robin (nginx): every pick adds each eligible
 * endpoint's weight to its running score, takes the highest score and
 * subtracts the eligible total from it. Weights 5:1:1 give a,a,b,a,c,a,a
 * rather than five a's in a row; equal weights give a strict rotation.
 */
export class RoundRobinBalancer implements LoadBalancer {
  private readonly scores: Float64Array;

  constructor(private readonly endpoints: readonly Endpoint[]) {
    this.scores = new Float64Array(endpoints.length);
  }

  pick(_ctx: PickContext, exclude?: Endpoint): Endpoint | undefined {
    let total = 0;
    let best = -1;
    let bestScore = -Infinity;
    for (let i = 0; i < this.endpoints.length; i++) {
      const endpoint = this.endpoints[i]!;
      if (!endpoint.available || endpoint === exclude) continue;
      const score = this.scores[i]! + endpoint.weight;
      this.scores[i] = score;
      total += endpoint.weight;
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    if (best < 0) return fallbackTo(exclude);
    this.scores[best] = bestScore - total;
    return this.endpoints[best];
  }
}
