// Config -> Snapshot: every expensive step of serving (regexes, weights,
// load balancers, pools, metric children) happens here, once per load.

import { Cluster } from './cluster/cluster.js';
import type { Config, ListenerConfig, RouteConfig } from './config/types.js';
import type { Metrics } from './observability/metrics.js';
import { compileHeaderOps } from './proxy/headers.js';
import { compileRetryPolicy } from './proxy/retry-policy.js';
import { compileMatch } from './router/match.js';
import { compileRewrite } from './router/rewrite.js';
import { compileWeighted } from './router/weighted.js';
import type { ClusterRuntime, CompiledListener, CompiledRoute, Snapshot } from './snapshot-types.js';

/** Label value of requests that matched no route. */
export const NO_ROUTE_LABEL = 'no_route';

export function compileSnapshot(config: Config, metrics: Metrics, version: number): Snapshot {
  const clusters = new Map<string, ClusterRuntime>();
  for (const c of config.clusters) {
    clusters.set(c.name, { cluster: new Cluster(c), metrics: metrics.cluster(c.name) });
  }
  const listeners = config.listeners.map((l) => compileListener(l, clusters, metrics));
  return { version, loadedAt: new Date(), config, listeners, clusters };
}

function compileListener(l: ListenerConfig, clusters: Map<string, ClusterRuntime>, metrics: Metrics): CompiledListener {
  return {
    config: l,
    routes: l.routes.map((r) => compileRoute(l.name, r, clusters, metrics)),
    noRouteMetrics: metrics.route(l.name, NO_ROUTE_LABEL),
  };
}

function compileRoute(
  listener: string,
  r: RouteConfig,
  clusters: Map<string, ClusterRuntime>,
  metrics: Metrics,
): CompiledRoute {
  return {
    name: r.name,
    matches: compileMatch(r.match),
    pickCluster: compileClusterChoice(r, clusters),
    direct: r.directResponse ? { status: r.directResponse.status, body: Buffer.from(r.directResponse.body ?? '') } : null,
    rewritePath: compileRewrite(r.match, r.rewrite),
    hostRewrite: r.rewrite?.host,
    timeout: r.timeout,
    retry: compileRetryPolicy(r.retries),
    requestOps: compileHeaderOps(r.requestHeaders),
    responseOps: compileHeaderOps(r.responseHeaders),
    metrics: metrics.route(listener, r.name),
  };
}

function compileClusterChoice(r: RouteConfig, clusters: Map<string, ClusterRuntime>): (() => ClusterRuntime) | null {
  // The validator guarantees every name resolves.
  const resolve = (name: string): ClusterRuntime => clusters.get(name)!;
  if (r.cluster !== undefined) {
    const only = resolve(r.cluster);
    return () => only;
  }
  if (r.weightedClusters !== undefined) {
    return compileWeighted(r.weightedClusters.map((w) => ({ value: resolve(w.cluster), weight: w.weight })));
  }
  return null;
}

/** Closes every pool of a snapshot (shutdown), letting in-flight requests finish. */
export async function closeSnapshot(s: Snapshot): Promise<void> {
  await Promise.all([...s.clusters.values()].map((c) => c.cluster.close()));
}
