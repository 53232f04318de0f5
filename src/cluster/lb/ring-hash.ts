import type { HashOnConfig } from '../../config/types.js';
import type { Endpoint } from '../endpoint.js';
import { hash32 } from '../hash.js';
import { keyHasherFor, type KeyHasher } from './hash-key.js';
import { fallbackTo, type LoadBalancer, type PickContext } from './types.js';
import { WeightedRandom } from './weighted-random.js';

/** Points on the ring per unit of weight: an endpoint's key share then strays about 1/sqrt(160) ≈ 8% from its weight's share. */
const POINTS_PER_WEIGHT = 160;
/** Large weights are scaled down past this so the ring stays a few hundred KiB. */
const MAX_RING_POINTS = 1 << 17;

/**
 * Consistent hashing: each endpoint owns many points on a 32-bit ring and a
 * key goes to the first point at or after its hash. Taking an endpoint away
 * hands only its own keys to its ring neighbours, so about 1/N of keys move.
 * Requests without the key (or clusters without `hashOn`) go to a random endpoint.
 */
export class RingHashBalancer implements LoadBalancer {
  private readonly points: Uint32Array;
  private readonly owners: Uint32Array;
  private readonly hashKey: KeyHasher | undefined;
  private readonly random: WeightedRandom;

  constructor(private readonly endpoints: readonly Endpoint[], hashOn: HashOnConfig | undefined) {
    this.hashKey = keyHasherFor(hashOn);
    this.random = new WeightedRandom(endpoints);
    const ring = buildRing(endpoints);
    this.points = ring.points;
    this.owners = ring.owners;
  }

  pick(ctx: PickContext, exclude?: Endpoint): Endpoint | undefined {
    const key = this.hashKey === undefined ? -1 : this.hashKey(ctx);
    if (key < 0 || this.points.length === 0) return this.random.pick(exclude) ?? fallbackTo(exclude);

    let index = this.firstPointAtOrAfter(key);
    const owner = this.endpoints[this.owners[index]!]!;
    if (owner.available && owner !== exclude) return owner;
    // Walking the ring when nothing is eligible would visit every point: rule that out first.
    if (!this.anyEligible(exclude)) return fallbackTo(exclude);
    for (;;) {
      index = index + 1 === this.points.length ? 0 : index + 1;
      const next = this.endpoints[this.owners[index]!]!;
      if (next.available && next !== exclude) return next;
    }
  }

  private firstPointAtOrAfter(key: number): number {
    let low = 0;
    let high = this.points.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.points[mid]! < key) low = mid + 1;
      else high = mid;
    }
    return low === this.points.length ? 0 : low;
  }

  private anyEligible(exclude: Endpoint | undefined): boolean {
    for (const endpoint of this.endpoints) {
      if (endpoint.available && endpoint !== exclude) return true;
    }
    return false;
  }
}

function buildRing(endpoints: readonly Endpoint[]): { points: Uint32Array; owners: Uint32Array } {
  const totalWeight = endpoints.reduce((sum, endpoint) => sum + endpoint.weight, 0);
  const scale = Math.min(1, MAX_RING_POINTS / (POINTS_PER_WEIGHT * Math.max(totalWeight, 1)));
  const entries: { point: number; owner: number }[] = [];
  endpoints.forEach((endpoint, owner) => {
    const count = Math.max(1, Math.round(endpoint.weight * POINTS_PER_WEIGHT * scale));
    // Points derive from the endpoint's address only, so they survive other endpoints coming and going.
    for (let i = 0; i < count; i++) entries.push({ point: hash32(`${endpoint.key}#${i}`), owner });
  });
  entries.sort((a, b) => a.point - b.point || a.owner - b.owner);
  return {
    points: Uint32Array.from(entries, (entry) => entry.point),
    owners: Uint32Array.from(entries, (entry) => entry.owner),
  };
}
