import { afterEach, describe, expect, it } from 'vitest';
import type { Cluster } from '../src/cluster/cluster.js';
import { PeakEwmaBalancer } from '../src/cluster/lb/peak-ewma.js';
import { clusterOf, countPicks, request, shares } from './lb-fixtures.js';

describe('peak_ewma', () => {
  let cluster: Cluster;
  afterEach(() => cluster.close());

  /** A balancer over the cluster's endpoints whose clock the test sets. */
  function balancer(): { pick: () => number; at: (ms: number) => void } {
    let now = 0;
    const lb = new PeakEwmaBalancer(cluster.endpoints, () => now);
    return {
      pick: () => cluster.endpoints.indexOf(lb.pick(request())!),
      at: (ms) => void (now = ms),
    };
  }

  it('gives only peak_ewma endpoints a latency estimate', () => {
    cluster = clusterOf('peak_ewma', [1, 1]);
    expect(cluster.endpoints.every((e) => e.latency !== null)).toBe(true);
    const other = clusterOf('least_request', [1, 1]);
    expect(other.endpoints.every((e) => e.latency === null)).toBe(true);
    void other.close();
  });

  it('spreads by weight while no endpoint has a sample (every cost is 0)', () => {
    cluster = clusterOf('peak_ewma', [1, 3]);
    const [light] = shares(countPicks(cluster, 4000));
    expect(light).toBeGreaterThan(0.2);
    expect(light).toBeLessThan(0.3);
  });

  it('never picks the slower of two idle endpoints', () => {
    cluster = clusterOf('peak_ewma', [1, 1, 1]);
    const lb = balancer();
    const [fast, slow, slower] = cluster.endpoints;
    fast!.latency!.observe(10, 0);
    slow!.latency!.observe(160, 0);
    slower!.latency!.observe(400, 0);
    const counts = [0, 0, 0];
    for (let i = 0; i < 600; i++) counts[lb.pick()]! += 1;
    // two distinct draws: the slower never wins, the fast one always does when drawn
    expect(counts[2]).toBe(0);
    expect(counts[0]).toBeGreaterThan(counts[1]!);
    expect(counts[0]! + counts[1]!).toBe(600);
  });

  it('weighs latency by in-flight requests + 1', () => {
    cluster = clusterOf('peak_ewma', [1, 1]);
    const lb = balancer();
    const [fast, slow] = cluster.endpoints;
    fast!.latency!.observe(10, 0);
    slow!.latency!.observe(50, 0);
    fast!.activeRequests = 4; // 10 × 5 = 50: a tie keeps the first draw
    const tie = [0, 0];
    for (let i = 0; i < 400; i++) tie[lb.pick()]! += 1;
    expect(tie[0]).toBeGreaterThan(100);
    expect(tie[1]).toBeGreaterThan(100);
    fast!.activeRequests = 5; // 60 > 50
    expect(Array.from({ length: 100 }, lb.pick)).toEqual(Array(100).fill(1));
    fast!.activeRequests = 3; // 40 < 50
    expect(Array.from({ length: 100 }, lb.pick)).toEqual(Array(100).fill(0));
  });

  it('tries an endpoint with no sample before one with any', () => {
    cluster = clusterOf('peak_ewma', [1, 1]);
    const lb = balancer();
    cluster.endpoints[0]!.latency!.observe(0.5, 0);
    expect(Array.from({ length: 50 }, lb.pick)).toEqual(Array(50).fill(1));
  });

  it('gives a slow endpoint traffic again once its peak has decayed below the others', () => {
    cluster = clusterOf('peak_ewma', [1, 1]);
    const lb = balancer();
    const [fast, slow] = cluster.endpoints;
    slow!.latency!.observe(160, 0);
    fast!.latency!.observe(10, 0);
    // 160 e^(-t/10 s) < 10 e^(-t/10 s) never: both decay alike...
    lb.at(20_000);
    expect(lb.pick()).toBe(0);
    // ...but the fast one keeps answering in 10 ms, and the slow one's peak falls below it after 10 s × ln 16 ≈ 27.7 s
    fast!.latency!.observe(10, 27_000);
    lb.at(27_000);
    expect(lb.pick()).toBe(0);
    fast!.latency!.observe(10, 28_000);
    lb.at(28_000);
    expect(lb.pick()).toBe(1);
  });

  it('skips unavailable endpoints and avoids the excluded one', () => {
    cluster = clusterOf('peak_ewma', [1, 1, 1]);
    const [fast, slow, slower] = cluster.endpoints;
    fast!.latency!.observe(1, 0);
    slow!.latency!.observe(100, 0);
    slower!.latency!.observe(200, 0);
    expect(countPicks(cluster, 100, request(), fast)).toEqual([0, 100, 0]);
    slow!.ejected = true;
    expect(countPicks(cluster, 100, request(), fast)).toEqual([0, 0, 100]);
    slower!.healthy = false;
    expect(cluster.pick(request(), fast)).toBe(fast);
    fast!.healthy = false;
    expect(cluster.pick(request())).toBeUndefined();
  });
});
