import { afterEach, describe, expect, it } from 'vitest';
import type { Cluster } from '../src/cluster/cluster.js';
import { clusterOf, countPicks, request } from './lb-fixtures.js';

describe('round_robin', () => {
  let cluster: Cluster;
  afterEach(() => cluster.close());

  const sequence = (picks: number) =>
    Array.from({ length: picks }, () => cluster.endpoints.indexOf(cluster.pick(request())!));

  it('rotates strictly over equal weights', () => {
    cluster = clusterOf('round_robin', [1, 1, 1]);
    expect(sequence(9)).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2]);
  });

  it('interleaves weighted endpoints smoothly (nginx 5:1:1 order)', () => {
    cluster = clusterOf('round_robin', [5, 1, 1]);
    expect(sequence(14)).toEqual([0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
  });

  it('honours weights 1:3 exactly', () => {
    cluster = clusterOf('round_robin', [1, 3]);
    expect(countPicks(cluster, 4000)).toEqual([1000, 3000]);
  });

  it('skips unhealthy and ejected endpoints', () => {
    cluster = clusterOf('round_robin', [1, 1, 1, 1]);
    cluster.endpoints[1]!.healthy = false;
    cluster.endpoints[3]!.ejected = true;
    expect(sequence(6)).toEqual([0, 2, 0, 2, 0, 2]);
    cluster.endpoints[1]!.healthy = true;
    expect(new Set(sequence(6))).toEqual(new Set([0, 1, 2]));
  });

  it('returns undefined when every endpoint is unavailable', () => {
    cluster = clusterOf('round_robin', [1, 1]);
    cluster.endpoints[0]!.healthy = false;
    cluster.endpoints[1]!.ejected = true;
    expect(cluster.pick(request())).toBeUndefined();
  });

  it('avoids the excluded endpoint while another is available', () => {
    cluster = clusterOf('round_robin', [1, 1, 1]);
    const tried = cluster.endpoints[1]!;
    expect(countPicks(cluster, 300, request(), tried)).toEqual([150, 0, 150]);
  });

  it('returns the excluded endpoint when it is the only available one, and not once it is unavailable', () => {
    cluster = clusterOf('round_robin', [1, 1]);
    const [first, second] = cluster.endpoints;
    second!.ejected = true;
    expect(cluster.pick(request(), first)).toBe(first);
    first!.healthy = false;
    expect(cluster.pick(request(), first)).toBeUndefined();
  });
});
