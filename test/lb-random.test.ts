import { afterEach, describe, expect, it } from 'vitest';
import type { Cluster } from '../src/cluster/cluster.js';
import { clusterOf, countPicks, request, shares } from './lb-fixtures.js';

describe('random', () => {
  let cluster: Cluster;
  afterEach(() => cluster.close());

  it('honours weights 1:3', () => {
    cluster = clusterOf('random', [1, 3]);
    const [light] = shares(countPicks(cluster, 4000));
    expect(light).toBeGreaterThan(0.2);
    expect(light).toBeLessThan(0.3);
  });

  it('reaches every endpoint of equal weight about equally', () => {
    cluster = clusterOf('random', [1, 1, 1, 1]);
    for (const share of shares(countPicks(cluster, 8000))) {
      expect(share).toBeGreaterThan(0.22);
      expect(share).toBeLessThan(0.28);
    }
  });

  it('keeps weights proportional among the endpoints still available', () => {
    cluster = clusterOf('random', [1, 5, 3]);
    cluster.endpoints[1]!.healthy = false;
    const [first, unhealthy, third] = shares(countPicks(cluster, 4000));
    expect(unhealthy).toBe(0);
    expect(first).toBeGreaterThan(0.2);
    expect(first).toBeLessThan(0.3);
    expect(third).toBeGreaterThan(0.7);
  });

  it('avoids the excluded endpoint and falls back to it only when alone', () => {
    cluster = clusterOf('random', [10, 1]);
    const [heavy, light] = cluster.endpoints;
    expect(countPicks(cluster, 200, request(), heavy)).toEqual([0, 200]);
    light!.ejected = true;
    expect(cluster.pick(request(), heavy)).toBe(heavy);
  });

  it('returns undefined when every endpoint is unavailable', () => {
    cluster = clusterOf('random', [1, 2]);
    cluster.endpoints[0]!.healthy = false;
    cluster.endpoints[1]!.ejected = true;
    expect(cluster.pick(request())).toBeUndefined();
  });
});
