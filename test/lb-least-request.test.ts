import { afterEach, describe, expect, it } from 'vitest';
import type { Cluster } from '../src/cluster/cluster.js';
import { clusterOf, countPicks, request, shares } from './lb-fixtures.js';

describe('least_request', () => {
  let cluster: Cluster;
  afterEach(() => cluster.close());

  it('spreads evenly over idle endpoints of equal weight', () => {
    cluster = clusterOf('least_request', [1, 1, 1]);
    for (const share of shares(countPicks(cluster, 6000))) {
      expect(share).toBeGreaterThan(1 / 3 - 0.03);
      expect(share).toBeLessThan(1 / 3 + 0.03);
    }
  });

  it('honours weights 1:3 among idle endpoints', () => {
    cluster = clusterOf('least_request', [1, 3]);
    const [light] = shares(countPicks(cluster, 4000));
    expect(light).toBeGreaterThan(0.2);
    expect(light).toBeLessThan(0.3);
  });

  it('never picks the busiest endpoint when the others are idle', () => {
    cluster = clusterOf('least_request', [1, 1, 1]);
    cluster.endpoints[0]!.activeRequests = 5;
    const counts = countPicks(cluster, 1000);
    expect(counts[0]).toBe(0);
    expect(counts[1]! + counts[2]!).toBe(1000);
  });

  it('compares load per unit of weight', () => {
    cluster = clusterOf('least_request', [4, 1]);
    const [big, small] = cluster.endpoints;
    big!.activeRequests = 2; // 0.5 per unit
    small!.activeRequests = 1; // 1 per unit
    expect(countPicks(cluster, 200)).toEqual([200, 0]);
  });

  it('keeps two endpoints within one request of each other as requests pile up', () => {
    cluster = clusterOf('least_request', [1, 1]);
    const [a, b] = cluster.endpoints;
    for (let i = 0; i < 301; i++) {
      cluster.pick(request())!.begin();
      expect(Math.abs(a!.activeRequests - b!.activeRequests)).toBeLessThanOrEqual(1);
    }
    expect(cluster.activeRequests).toBe(301);
  });

  it('skips unavailable endpoints and returns undefined when none is left', () => {
    cluster = clusterOf('least_request', [1, 1, 1]);
    cluster.endpoints[0]!.ejected = true;
    const counts = countPicks(cluster, 500);
    expect(counts[0]).toBe(0);
    expect(counts[1]).toBeGreaterThan(150);
    expect(counts[2]).toBeGreaterThan(150);
    cluster.endpoints[1]!.healthy = false;
    cluster.endpoints[2]!.healthy = false;
    expect(cluster.pick(request())).toBeUndefined();
  });

  it('avoids the excluded endpoint even when it is the idle one', () => {
    cluster = clusterOf('least_request', [1, 1, 1]);
    const [idle, busy, busier] = cluster.endpoints;
    busy!.activeRequests = 3;
    busier!.activeRequests = 7;
    expect(countPicks(cluster, 200, request(), idle)).toEqual([0, 200, 0]);
    busy!.healthy = false;
    busier!.healthy = false;
    expect(cluster.pick(request(), idle)).toBe(idle);
  });
});
