// What one configuration version compiles to. The request path reads only
// these objects: every name is already resolved to the thing it names.

import type { ErrorRateBreaker } from './cluster/breaker.js';
import type { Cluster } from './cluster/cluster.js';
import type { DnsDiscovery } from './cluster/dns.js';
import type { HealthChecker } from './cluster/health.js';
import type { ConcurrencyLimits } from './cluster/limits.js';
import type { OutlierDetector } from './cluster/outlier.js';
import type { Config, ListenerConfig } from './config/types.js';
import type { ClusterMetrics, RouteMetrics } from './observability/metrics.js';
import type { DeadlineQueue } from './proxy/deadlines.js';
import type { CompiledHeaderOps } from './proxy/headers.js';
import type { RouteAuth } from './proxy/jwt-auth.js';
import type { RateLimiter } from './proxy/rate-limit.js';
import type { RetryPolicy } from './proxy/retry-policy.js';
import type { RouteMatcher } from './router/match.js';
import type { Tracer } from './tracing/tracer.js';
import type { SharedBuffers } from './workers/shared-state.js';

export interface ClusterRuntime {
  readonly cluster: Cluster;
  readonly metrics: ClusterMetrics;
  /** the concurrency limits: always on */
  readonly limits: ConcurrencyLimits;
  /** the error-rate breaker: only with errorThresholdPercentage */
  readonly breaker: ErrorRateBreaker | null;
  readonly outlier: OutlierDetector | null;
  /** replaced, for the new endpoint list, each time DNS discovery changes it */
  health: HealthChecker | null;
  /** keeps `cluster`'s endpoints in step with clusters[].dns; null for fixed endpoints */
  readonly dns: DnsDiscovery | null;
}

export interface DirectResponse {
  readonly status: number;
  readonly body: Buffer;
}

export interface CompiledRoute {
  readonly name: string;
  readonly matches: RouteMatcher;
  /** the cluster for this request (weighted routes pick one per call); null for a direct response */
  readonly pickCluster: (() => ClusterRuntime) | null;
  readonly direct: DirectResponse | null;
  readonly rewritePath: ((path: string) => string) | null;
  readonly hostRewrite: string | undefined;
  /** ms, 0 = none */
  readonly timeout: number;
  /** ms, the cap on a gRPC request's grpc-timeout; 0 = no cap */
  readonly maxGrpcTimeout: number;
  /** the deadlines of `timeout`; null when there is none */
  readonly routeDeadlines: DeadlineQueue | null;
  readonly retry: RetryPolicy;
  /** the deadlines of the per-try timeout; null when there is none or the route timeout comes first */
  readonly tryDeadlines: DeadlineQueue | null;
  /** ms without a byte either way before the exchange is cut; 0 = off */
  readonly idleTimeout: number;
  /** the deadlines of an upgrade's wait for its answer (route or idle timeout, the shorter); null when neither is set */
  readonly upgradeDeadlines: DeadlineQueue | null;
  readonly requestOps: CompiledHeaderOps | undefined;
  readonly responseOps: CompiledHeaderOps | undefined;
  /** null when the route is not limited: the request path then skips the stage */
  readonly rateLimit: RateLimiter | null;
  /** null when the route needs no token: the request path then stays synchronous */
  readonly auth: RouteAuth | null;
  readonly metrics: RouteMetrics;
}

export interface CompiledListener {
  readonly config: ListenerConfig;
  readonly routes: readonly CompiledRoute[];
  /** counts requests that matched no route */
  readonly noRouteMetrics: RouteMetrics;
  /** null when tracing is off */
  readonly tracer: Tracer | null;
}

export interface Snapshot {
  readonly version: number;
  readonly loadedAt: Date;
  readonly config: Config;
  readonly listeners: readonly CompiledListener[];
  readonly clusters: ReadonlyMap<string, ClusterRuntime>;
  /** the memory its limits, breakers and buckets share with the other workers */
  readonly shared: SharedBuffers;
}
