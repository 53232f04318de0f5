// The state that makes limits hold for the tandem as a whole, not per
// worker (CONTRACT §12): each cluster's concurrency counters and error-rate
// breaker, each rate-limited route's token buckets, in SharedArrayBuffers
// that every worker thread maps. Workers read and change them with Atomics,
// synchronously, with no message on the request path. One worker (workers: 1,
// or a test) is simply worker 0 of 1: the same code, the same buffers.

import { isDeepStrictEqual } from 'node:util';
import { breakerBytes, initBreaker, releaseWorkerTrial, sharedBreakerState, type BreakerState } from '../cluster/breaker.js';
import { limitsBytes, releaseWorkerLimits } from '../cluster/limits.js';
import type { ClusterConfig, Config, RouteConfig } from '../config/types.js';
import { allocateBuckets, rateLimitKeys, releaseWorkerLocks } from '../proxy/rate-limit.js';

/** The shared memory of one configuration: structured-clonable, posted to every worker. */
export interface SharedBuffers {
  /** by cluster name: the concurrency limits, then the breaker */
  readonly clusters: ReadonlyMap<string, SharedArrayBuffer>;
  /** by `${listener}/${route}`, for routes with a rateLimit: the token buckets */
  readonly routes: ReadonlyMap<string, SharedArrayBuffer>;
}

/** Which worker this is, of how many: the index of its own share in every buffer. */
export interface WorkerSlot {
  readonly index: number;
  readonly count: number;
}

/** The only worker of a tandem running in one thread. */
export const SOLE_WORKER: WorkerSlot = { index: 0, count: 1 };

/** Where the breaker starts in a cluster's buffer. */
export function breakerOffset(workers: number): number {
  return limitsBytes(workers);
}

/** One cluster's buffer: fresh counters at 0 and a closed breaker. */
export function allocateCluster(workers: number): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(limitsBytes(workers) + breakerBytes(workers));
  initBreaker(buffer, breakerOffset(workers));
  return buffer;
}

export function routeKey(listener: string, route: string): string {
  return `${listener}/${route}`;
}

/**
 * The buffers for `config` served by `workers` workers. On a reload,
 * `previous` is the running configuration and its buffers: with the same
 * carry-over rules as the snapshot's (src/snapshot.ts), a cluster whose
 * config is unchanged keeps its buffer (counters and breaker state), a route
 * whose listener, name and rateLimit are unchanged keeps its buckets; the
 * rest starts fresh.
 */
export function allocateShared(config: Config, workers: number, previous?: { config: Config; buffers: SharedBuffers }): SharedBuffers {
  const size = limitsBytes(workers) + breakerBytes(workers);
  const clusters = new Map<string, SharedArrayBuffer>();
  for (const c of config.clusters) {
    const old = previous?.buffers.clusters.get(c.name);
    const same = old !== undefined && old.byteLength === size && isDeepStrictEqual(clusterConfig(previous!.config, c.name), c);
    clusters.set(c.name, same ? old : allocateCluster(workers));
  }
  const routes = new Map<string, SharedArrayBuffer>();
  for (const l of config.listeners) {
    for (const r of l.routes) {
      if (r.rateLimit === undefined) continue;
      const key = routeKey(l.name, r.name);
      const old = previous?.buffers.routes.get(key);
      const same = old !== undefined && isDeepStrictEqual(routeConfig(previous!.config, l.name, r.name)?.rateLimit, r.rateLimit);
      routes.set(key, same ? old : allocateBuckets(rateLimitKeys(r.rateLimit)));
    }
  }
  return { clusters, routes };
}

function clusterConfig(config: Config, name: string): ClusterConfig | undefined {
  return config.clusters.find((c) => c.name === name);
}

function routeConfig(config: Config, listener: string, route: string): RouteConfig | undefined {
  return config.listeners.find((l) => l.name === listener)?.routes.find((r) => r.name === route);
}

/**
 * Worker `index` is gone (crashed or ended): what its requests held is given
 * back (its share of the concurrency counters, its half-open trial, a
 * bucket set it had locked), so that the others go on as if its requests had
 * finished, and a replacement in the same slot starts from 0. Called by the
 * supervisor before it starts the replacement; the gone worker's breaker
 * verdicts stay in the window until they age out, as any others.
 */
export function resetWorkerSlot(buffers: SharedBuffers, slot: WorkerSlot): void {
  for (const buffer of buffers.clusters.values()) {
    releaseWorkerLimits(buffer, 0, slot.index);
    releaseWorkerTrial(buffer, breakerOffset(slot.count), slot.index);
  }
  for (const buffer of buffers.routes.values()) releaseWorkerLocks(buffer, slot.index);
}

/** The breaker state of a cluster as every worker sees it, read by a thread serving no requests (the admin API's /clusters). */
export function clusterBreakerState(buffers: SharedBuffers, cluster: string, workers: number): BreakerState {
  return sharedBreakerState(buffers.clusters.get(cluster)!, breakerOffset(workers));
}
