import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../src/cluster/cluster.js';
import type { LoadBalancing } from '../src/config/types.js';
import { clusterOf, countPicks, request } from './lb-fixtures.js';

const POLICIES: LoadBalancing[] = ['round_robin', 'least_request', 'random', 'ring_hash', 'peak_ewma'];

describe('panicThreshold', () => {
  const clusters: Cluster[] = [];
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((c) => c.close()));
  });
  const make = (policy: LoadBalancing, weights: number[], threshold: number): Cluster => {
    const cluster = clusterOf(policy, weights, policy === 'ring_hash' ? { header: 'x-user' } : undefined, threshold);
    clusters.push(cluster);
    return cluster;
  };

  for (const policy of POLICIES) {
    it(`${policy}: below the threshold, balances over every endpoint; at or above it, over the healthy ones`, () => {
      const cluster = make(policy, [1, 1, 1, 1], 50);
      const [a, b, c, d] = cluster.endpoints;
      a!.healthy = false;
      b!.ejected = true;
      // 2 of 4 in rotation: 50% is not below 50%
      expect(cluster.panicking).toBe(false);
      expect(countPicks(cluster, 400)[0]! + countPicks(cluster, 400)[1]!).toBe(0);
      c!.healthy = false;
      // 1 of 4: panic, all four are eligible again
      expect(cluster.panicking).toBe(true);
      expect(cluster.endpoints.every((e) => e.available)).toBe(true);
      const keys = Array.from({ length: 400 }, (_, i) => request({ 'x-user': `user-${i}` }));
      const reached = new Set(keys.map((ctx) => cluster.pick(ctx)));
      expect(reached).toEqual(new Set([a, b, c, d]));
      // with none healthy, still every endpoint
      d!.ejected = true;
      expect(new Set(keys.map((ctx) => cluster.pick(ctx)))).toEqual(new Set([a, b, c, d]));
      // one back: 1 of 4 is still below; two back: out of panic, the others out of rotation again
      a!.healthy = true;
      expect(cluster.panicking).toBe(true);
      d!.ejected = false;
      expect(cluster.panicking).toBe(false);
      expect(new Set(keys.map((ctx) => cluster.pick(ctx)))).toEqual(new Set([a, d]));
    });
  }

  it('off (0): no endpoint left means no pick', () => {
    const cluster = make('round_robin', [1, 1], 0);
    cluster.endpoints[0]!.healthy = false;
    cluster.endpoints[1]!.ejected = true;
    expect(cluster.panicking).toBe(false);
    expect(cluster.pick(request())).toBeUndefined();
  });

  it('100: one endpoint out of rotation is enough to balance over all', () => {
    const cluster = make('round_robin', [1, 1, 1], 100);
    cluster.endpoints[2]!.healthy = false;
    expect(cluster.panicking).toBe(true);
    expect(countPicks(cluster, 300)).toEqual([100, 100, 100]);
  });

  it('a closing endpoint stays out even in panic', async () => {
    // closed by hand: the cluster's close() would close `closing` twice
    const cluster = clusterOf('round_robin', [1, 1], undefined, 50);
    const [kept, closing] = cluster.endpoints;
    kept!.healthy = false;
    closing!.healthy = false;
    expect(countPicks(cluster, 4)).toEqual([2, 2]);
    await closing!.close();
    kept!.healthy = true;
    kept!.healthy = false;
    expect(countPicks(cluster, 4)).toEqual([4, 0]);
    await kept!.close();
  });

  it('reports entering and leaving panic, once each way', () => {
    const heard: boolean[] = [];
    const base = clusterOf('random', [1, 1], undefined, 60);
    const cluster = new Cluster(base.config, (panicking) => heard.push(panicking));
    clusters.push(base, cluster);
    const [a, b] = cluster.endpoints;
    a!.healthy = false; // 1 of 2 = 50% < 60%
    b!.ejected = true; // 0 of 2
    b!.ejected = false;
    expect(heard).toEqual([true]);
    a!.healthy = true;
    expect(heard).toEqual([true, false]);
    b!.ejected = true;
    expect(heard).toEqual([true, false, true]);
  });

  it('follows a new endpoint list: endpoints that joined healthy count', () => {
    const cluster = make('round_robin', [1, 1], 50);
    cluster.endpoints[0]!.healthy = false;
    cluster.endpoints[1]!.healthy = false;
    expect(cluster.panicking).toBe(true);
    const before = cluster.endpoints.map((e) => ({ address: e.address, port: e.port, weight: e.weight }));
    cluster.setEndpoints([...before, { address: '127.0.0.1', port: 20009, weight: 1 }, { address: '127.0.0.1', port: 20010, weight: 1 }]);
    // 2 of 4 healthy: no longer below 50%
    expect(cluster.panicking).toBe(false);
    expect(countPicks(cluster, 4)).toEqual([0, 0, 2, 2]);
    cluster.setEndpoints(before);
    expect(cluster.panicking).toBe(true);
    expect(countPicks(cluster, 4)).toEqual([2, 2]);
  });
});
