import type { IncomingHttpHeaders } from 'node:http';
import { Cluster, type PickContext } from '../src/cluster/cluster.js';
import type { Endpoint } from '../src/cluster/endpoint.js';
import type { HashOnConfig, LoadBalancing } from '../src/config/types.js';

/** A cluster of never-connected endpoints on 127.0.0.1:20001.. with the given weights. */
export function clusterOf(loadBalancing: LoadBalancing, weights: number[], hashOn?: HashOnConfig, panicThreshold = 0): Cluster {
  return new Cluster({
    name: 'test',
    endpoints: weights.map((weight, i) => ({ address: '127.0.0.1', port: 20001 + i, weight })),
    protocol: 'http1',
    loadBalancing,
    ...(hashOn === undefined ? {} : { hashOn }),
    panicThreshold,
    connectTimeout: 1000,
    pool: { connections: 4, keepAliveTimeout: 4000 },
    circuitBreaker: { maxRequests: 1024, maxPendingRequests: 1024, maxRetries: 3, volumeThreshold: 20, window: 10_000, resetTimeout: 30_000 },
    retryBudget: { percent: 20, minConcurrency: 3 },
  });
}

export function request(headers: IncomingHttpHeaders = {}, clientIp = '10.0.0.1'): PickContext {
  return { headers, clientIp };
}

/** Picks `times` endpoints and counts them by position in the cluster. */
export function countPicks(cluster: Cluster, times: number, ctx = request(), exclude?: Endpoint): number[] {
  const counts = cluster.endpoints.map(() => 0);
  for (let i = 0; i < times; i++) {
    const picked = cluster.pick(ctx, exclude);
    if (picked === undefined) throw new Error('no endpoint picked');
    counts[cluster.endpoints.indexOf(picked)]! += 1;
  }
  return counts;
}

export function shares(counts: number[]): number[] {
  const total = counts.reduce((sum, count) => sum + count, 0);
  return counts.map((count) => count / total);
}
