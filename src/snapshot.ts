// Config -> Snapshot: every expensive step of serving (regexes, weights,
// load balancers, pools, metric children) happens here, once per load.

import { isDeepStrictEqual } from 'node:util';
import { ErrorRateBreaker } from './cluster/breaker.js';
import { Cluster } from './cluster/cluster.js';
import type { Endpoint } from './cluster/endpoint.js';
import { DnsDiscovery, lookupAll, type Resolver } from './cluster/dns.js';
import { HealthChecker } from './cluster/health.js';
import { ConcurrencyLimits } from './cluster/limits.js';
import { OutlierDetector } from './cluster/outlier.js';
import type { ClusterConfig, Config, EndpointConfig, HealthCheckConfig, ListenerConfig, RouteConfig } from './config/types.js';
import { log } from './observability/log.js';
import type { Metrics } from './observability/metrics.js';
import { deadlinesOf, type DeadlineQueue } from './proxy/deadlines.js';
import { compileHeaderOps } from './proxy/headers.js';
import { compileJwtAuth } from './proxy/jwt-auth.js';
import { compileRateLimit, type RateLimiter } from './proxy/rate-limit.js';
import { compileRetryPolicy } from './proxy/retry-policy.js';
import { compileMatch } from './router/match.js';
import { compileRewrite } from './router/rewrite.js';
import { compileWeighted } from './router/weighted.js';
import type { ClusterRuntime, CompiledListener, CompiledRoute, Snapshot } from './snapshot-types.js';
import type { Tracer } from './tracing/tracer.js';
import { breakerOffset, routeKey, type SharedBuffers, type WorkerSlot } from './workers/shared-state.js';

/** Label value of requests that matched no route. */
export const NO_ROUTE_LABEL = 'no_route';

/**
 * On a reload, `previous` is the running snapshot: a cluster whose
 * configuration is unchanged is carried over with its runtime (pools, health
 * and ejection state, breaker, limits), and so are the rate-limit buckets of
 * a route whose listener, name and `rateLimit` are unchanged; the others are
 * built fresh. `tracer` is this load's (null: tracing off). `shared` holds
 * the state every worker shares, allocated for `config` by allocateShared
 * (with the same carry-over), and `slot` says which worker this is.
 */
export function compileSnapshot(
  config: Config,
  metrics: Metrics,
  version: number,
  previous: Snapshot | undefined,
  tracer: Tracer | null,
  shared: SharedBuffers,
  slot: WorkerSlot,
): Snapshot {
  const clusters = new Map<string, ClusterRuntime>();
  for (const c of config.clusters) {
    clusters.set(c.name, unchangedCluster(previous, c) ?? compileCluster(c, metrics, shared.clusters.get(c.name)!, slot));
  }
  const listeners = config.listeners.map((l) =>
    compileListener(l, clusters, metrics, previous?.listeners.find((p) => p.config.name === l.name), tracer, shared, slot),
  );
  return { version, loadedAt: new Date(), config, listeners, clusters, shared };
}

function unchangedCluster(previous: Snapshot | undefined, c: ClusterConfig): ClusterRuntime | undefined {
  const old = previous?.clusters.get(c.name);
  return old !== undefined && isDeepStrictEqual(old.cluster.config, c) ? old : undefined;
}

/** The cluster runtimes of `previous` that `next` no longer uses: removed, or replaced by a changed config. */
export function retiredClusters(previous: Snapshot, next: Snapshot): ClusterRuntime[] {
  const kept = new Set(next.clusters.values());
  return [...previous.clusters.values()].filter((c) => !kept.has(c));
}

/**
 * A cluster with its resilience parts, each bound to its metrics. Health
 * checks start probing and DNS discovery starts resolving here; a dns cluster
 * has no endpoints until its first resolution succeeds. Its limits and
 * breaker live in `buffer` (allocateCluster), as worker `slot`. `resolve` is
 * for tests.
 */
export function compileCluster(
  c: ClusterConfig,
  metrics: Metrics,
  buffer: SharedArrayBuffer,
  slot: WorkerSlot,
  resolve: Resolver = lookupAll,
): ClusterRuntime {
  const cluster = new Cluster(c, (panicking) =>
    log.warn(
      { cluster: c.name, panicThreshold: c.panicThreshold },
      panicking ? 'below the panic threshold: balancing over every endpoint' : 'panic over: balancing over healthy endpoints',
    ),
  );
  const m = metrics.cluster(c.name);
  // A cluster rebuilt by a reload starts closed: the gauge must not keep
  // the open state of the runtime it replaces.
  m.breakerOpen(false);
  const cb = c.circuitBreaker;
  const breaker =
    cb.errorThresholdPercentage === undefined
      ? null
      : new ErrorRateBreaker(
          { ...cb, errorThresholdPercentage: cb.errorThresholdPercentage },
          (state) => m.breakerOpen(state === 'open'),
          buffer,
          breakerOffset(slot.count),
          slot,
        );
  const outlier =
    c.outlierDetection === undefined
      ? null
      : new OutlierDetector(c.outlierDetection, cluster.endpoints, (e) => {
          m.ejected();
          log.warn({ cluster: c.name, endpoint: e.key }, 'outlier ejected');
        });
  const health = c.healthCheck === undefined ? null : checkHealth(c.name, c.healthCheck, cluster.endpoints, metrics);
  const dns =
    c.dns === undefined ? null : new DnsDiscovery(c.name, c.dns, (list) => followEndpoints(runtime, list, metrics), resolve);
  const limits = new ConcurrencyLimits(cb, c.retryBudget, buffer, 0, slot);
  const runtime: ClusterRuntime = { cluster, metrics: m, limits, breaker, outlier, health, dns };
  dns?.start();
  return runtime;
}

function checkHealth(cluster: string, cfg: HealthCheckConfig, endpoints: readonly Endpoint[], metrics: Metrics): HealthChecker {
  for (const e of endpoints) metrics.endpointHealthy(cluster, e.key, e.healthy);
  const health = new HealthChecker(cfg, endpoints, (e, healthy) => {
    metrics.endpointHealthy(cluster, e.key, healthy);
    log.warn({ cluster, endpoint: e.key, healthy }, 'health check state changed');
  });
  health.start();
  return health;
}

/**
 * A DNS change: the cluster swaps in the new list, outlier detection follows
 * it in place, and health checking is rebuilt over it. Healthy and ejected
 * flags live on the endpoints that stay, so they carry over; only the probe
 * counts towards the next threshold start again.
 */
function followEndpoints(runtime: ClusterRuntime, list: EndpointConfig[], metrics: Metrics): void {
  const { cluster } = runtime;
  const { added, removed } = cluster.setEndpoints(list);
  runtime.outlier?.setEndpoints(cluster.endpoints);
  const cfg = cluster.config.healthCheck;
  if (cfg !== undefined) {
    for (const e of removed) metrics.endpointRemoved(cluster.name, e.key);
    runtime.health?.close();
    runtime.health = checkHealth(cluster.name, cfg, cluster.endpoints, metrics);
  }
  log.info(
    { cluster: cluster.name, endpoints: cluster.endpoints.map((e) => e.key), added: added.length, removed: removed.length },
    'dns endpoints changed',
  );
}

function compileListener(
  l: ListenerConfig,
  clusters: Map<string, ClusterRuntime>,
  metrics: Metrics,
  previous: CompiledListener | undefined,
  tracer: Tracer | null,
  shared: SharedBuffers,
  slot: WorkerSlot,
): CompiledListener {
  return {
    config: l,
    routes: l.routes.map((r) => compileRoute(l.name, r, clusters, metrics, previous, shared, slot)),
    noRouteMetrics: metrics.route(l.name, NO_ROUTE_LABEL),
    tracer,
  };
}

function compileRoute(
  listener: string,
  r: RouteConfig,
  clusters: Map<string, ClusterRuntime>,
  metrics: Metrics,
  previous: CompiledListener | undefined,
  shared: SharedBuffers,
  slot: WorkerSlot,
): CompiledRoute {
  const requestOps = compileHeaderOps(r.requestHeaders);
  const retry = compileRetryPolicy(r.retries);
  const perTry = retry.perTryTimeout;
  return {
    name: r.name,
    matches: compileMatch(r.match),
    pickCluster: compileClusterChoice(r, clusters),
    direct: r.directResponse ? { status: r.directResponse.status, body: Buffer.from(r.directResponse.body ?? '') } : null,
    rewritePath: compileRewrite(r.match, r.rewrite),
    hostRewrite: r.rewrite?.host,
    timeout: r.timeout,
    maxGrpcTimeout: r.maxGrpcTimeout,
    routeDeadlines: r.timeout > 0 ? deadlinesOf(r.timeout) : null,
    retry,
    tryDeadlines: perTry > 0 && (r.timeout === 0 || perTry < r.timeout) ? deadlinesOf(perTry) : null,
    idleTimeout: r.idleTimeout,
    upgradeDeadlines: upgradeAnswerDeadlines(r.timeout, r.idleTimeout),
    requestOps,
    responseOps: compileHeaderOps(r.responseHeaders),
    rateLimit:
      unchangedRateLimit(previous, r) ??
      (r.rateLimit === undefined ? null : compileRateLimit(r.rateLimit, shared.routes.get(routeKey(listener, r.name))!, slot.index)),
    auth: r.auth === undefined ? null : compileJwtAuth(r.auth.jwt, requestOps),
    metrics: metrics.route(listener, r.name),
  };
}

/** The running limiter of the same-named route when its `rateLimit` is unchanged: a reload must not refill a drained bucket. */
function unchangedRateLimit(previous: CompiledListener | undefined, r: RouteConfig): RateLimiter | undefined {
  if (previous === undefined || r.rateLimit === undefined) return undefined;
  const i = previous.config.routes.findIndex((p) => p.name === r.name);
  if (i < 0 || !isDeepStrictEqual(previous.config.routes[i]!.rateLimit, r.rateLimit)) return undefined;
  return previous.routes[i]!.rateLimit ?? undefined;
}

/**
 * An upgrade waits for its answer without a byte either way, so both the
 * route timeout and the idle timeout bound that wait: the shorter of those set.
 */
function upgradeAnswerDeadlines(timeout: number, idleTimeout: number): DeadlineQueue | null {
  const ms = timeout === 0 ? idleTimeout : idleTimeout === 0 ? timeout : Math.min(timeout, idleTimeout);
  return ms > 0 ? deadlinesOf(ms) : null;
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

/** Stops a snapshot's timers and closes its pools (shutdown), letting in-flight requests finish. */
export async function closeSnapshot(s: Snapshot): Promise<void> {
  await Promise.all([...s.clusters.values()].map(closeCluster));
}

/** Stops a cluster's health checks, ejection and breaker timers, then closes its pools once in-flight tries end. Once per runtime. */
export async function closeCluster(c: ClusterRuntime): Promise<void> {
  c.dns?.close();
  c.health?.close();
  c.outlier?.close();
  c.breaker?.close();
  await c.cluster.close();
}
