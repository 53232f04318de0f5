import type { Endpoint } from '../endpoint.js';

/**
 * Weighted random choice among endpoints. The common case (the drawn endpoint
 * is eligible) is one binary search over precomputed cumulative weights; only
 * when it is not do we redraw over the eligible endpoints alone, which keeps
 * the result proportional to weight among the eligible ones.
 */
export class WeightedRandom {
  private readonly cumulative: Float64Array;
  private readonly total: number;

  constructor(private readonly endpoints: readonly Endpoint[]) {
    this.cumulative = new Float64Array(endpoints.length);
    let sum = 0;
    endpoints.forEach((endpoint, i) => {
      sum += endpoint.weight;
      this.cumulative[i] = sum;
    });
    this.total = sum;
  }

  /** A random available endpoint other than `skipA` and `skipB`, by weight. */
  pick(skipA?: Endpoint, skipB?: Endpoint): Endpoint | undefined {
    const drawn = this.endpoints[this.indexAt(Math.random() * this.total)];
    if (drawn !== undefined && drawn.available && drawn !== skipA && drawn !== skipB) return drawn;
    return this.pickAmongEligible(skipA, skipB);
  }

  private indexAt(point: number): number {
    let low = 0;
    let high = this.cumulative.length - 1;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (point < this.cumulative[mid]!) high = mid;
      else low = mid + 1;
    }
    return low;
  }

  private pickAmongEligible(skipA?: Endpoint, skipB?: Endpoint): Endpoint | undefined {
    let eligibleTotal = 0;
    for (const endpoint of this.endpoints) {
      if (endpoint.available && endpoint !== skipA && endpoint !== skipB) eligibleTotal += endpoint.weight;
    }
    if (eligibleTotal <= 0) return undefined;
    let point = Math.random() * eligibleTotal;
    let last: Endpoint | undefined;
    for (const endpoint of this.endpoints) {
      if (!endpoint.available || endpoint === skipA || endpoint === skipB) continue;
      point -= endpoint.weight;
      last = endpoint;
      if (point < 0) return endpoint;
    }
    // Floating-point rounding can leave `point` at zero after the last subtraction.
    return last;
  }
}
