import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

// A sidecar adds well under a millisecond and upstreams rarely exceed the
// default 15 s route timeout, so the buckets span 0.5 ms to 30 s.
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export type ReloadResult = 'success' | 'failure';
export type RejectionReason = 'open' | 'overflow';

/** Bound once per route at compile time; `request` runs on the hot path. */
export interface RouteMetrics {
  request(status: number, seconds: number): void;
}

/** Bound once per cluster at compile time; the methods run on the hot path. */
export interface ClusterMetrics {
  /** `status` is the upstream's, or tandem's 502/504 when the try got no response */
  attempt(status: number, seconds: number): void;
  retry(): void;
  activeInc(): void;
  activeDec(): void;
  breakerOpen(open: boolean): void;
  rejected(reason: RejectionReason): void;
  ejected(): void;
}

type CounterChild = Counter.Internal;

/**
 * Caches one counter child per status code: the code label is the only one
 * that varies per request, and `.labels()` on every request would rebuild the
 * label object each time.
 */
function codeCounter(counter: Counter<string>, fixed: string[]): (status: number) => CounterChild {
  const children = new Map<number, CounterChild>();
  return (status) => {
    let child = children.get(status);
    if (child === undefined) {
      child = counter.labels(...fixed, String(status));
      children.set(status, child);
    }
    return child;
  };
}

export class Metrics {
  readonly registry: Registry;
  readonly contentType: string;

  private readonly requests: Counter<string>;
  private readonly requestDuration: Histogram<string>;
  private readonly upstreamRequests: Counter<string>;
  private readonly upstreamDuration: Histogram<string>;
  private readonly retries: Counter<string>;
  private readonly activeRequests: Gauge<string>;
  private readonly breakerOpenGauge: Gauge<string>;
  private readonly breakerRejections: Counter<string>;
  private readonly outlierEjections: Counter<string>;
  private readonly endpointHealthyGauge: Gauge<string>;
  private readonly reloads: Counter<string>;

  constructor() {
    this.registry = new Registry();
    const registers = [this.registry];
    this.contentType = this.registry.contentType;

    this.requests = new Counter({
      name: 'tandem_requests_total',
      help: 'Downstream requests answered, by listener, route and status code',
      labelNames: ['listener', 'route', 'code'],
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'tandem_request_duration_seconds',
      help: 'Time from the start of a downstream request to the end of its response',
      labelNames: ['listener', 'route'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.upstreamRequests = new Counter({
      name: 'tandem_upstream_requests_total',
      help: 'Upstream attempts, by cluster and status code (502/504 when no response came back)',
      labelNames: ['cluster', 'code'],
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: 'tandem_upstream_request_duration_seconds',
      help: 'Duration of each upstream attempt',
      labelNames: ['cluster'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.retries = new Counter({
      name: 'tandem_upstream_retries_total',
      help: 'Retries sent to a cluster (the first try is not counted)',
      labelNames: ['cluster'],
      registers,
    });
    this.activeRequests = new Gauge({
      name: 'tandem_upstream_active_requests',
      help: 'Requests in flight to a cluster',
      labelNames: ['cluster'],
      registers,
    });
    this.breakerOpenGauge = new Gauge({
      name: 'tandem_circuit_breaker_open',
      help: '1 while the cluster error-rate breaker is open, else 0',
      labelNames: ['cluster'],
      registers,
    });
    this.breakerRejections = new Counter({
      name: 'tandem_circuit_breaker_rejections_total',
      help: 'Requests refused by the circuit breaker, by reason (open, overflow)',
      labelNames: ['cluster', 'reason'],
      registers,
    });
    this.outlierEjections = new Counter({
      name: 'tandem_outlier_ejections_total',
      help: 'Endpoints ejected by outlier detection',
      labelNames: ['cluster'],
      registers,
    });
    this.endpointHealthyGauge = new Gauge({
      name: 'tandem_endpoint_healthy',
      help: '1 when the endpoint is healthy per active health checks, else 0',
      labelNames: ['cluster', 'endpoint'],
      registers,
    });
    this.reloads = new Counter({
      name: 'tandem_config_reloads_total',
      help: 'Configuration reloads, by result',
      labelNames: ['result'],
      registers,
    });
    // Series present at zero from the start, so rate() and alerts see the first increment.
    this.reloads.labels('success').inc(0);
    this.reloads.labels('failure').inc(0);

    collectDefaultMetrics({ register: this.registry, prefix: 'tandem_' });
  }

  route(listener: string, route: string): RouteMetrics {
    const codeChild = codeCounter(this.requests, [listener, route]);
    const duration = this.requestDuration.labels(listener, route);
    return {
      request(status, seconds) {
        codeChild(status).inc();
        duration.observe(seconds);
      },
    };
  }

  cluster(cluster: string): ClusterMetrics {
    const codeChild = codeCounter(this.upstreamRequests, [cluster]);
    const duration = this.upstreamDuration.labels(cluster);
    const retries = this.retries.labels(cluster);
    const active = this.activeRequests.labels(cluster);
    const breakerOpen = this.breakerOpenGauge.labels(cluster);
    const rejectedOpen = this.breakerRejections.labels(cluster, 'open');
    const rejectedOverflow = this.breakerRejections.labels(cluster, 'overflow');
    const ejections = this.outlierEjections.labels(cluster);
    // A reload binds the same cluster again: only seed series that do not
    // exist yet, or an in-flight count carried over would be zeroed.
    retries.inc(0);
    rejectedOpen.inc(0);
    rejectedOverflow.inc(0);
    ejections.inc(0);
    active.inc(0);
    breakerOpen.inc(0);
    return {
      attempt(status, seconds) {
        codeChild(status).inc();
        duration.observe(seconds);
      },
      retry: () => retries.inc(),
      activeInc: () => active.inc(),
      activeDec: () => active.dec(),
      breakerOpen: (open) => breakerOpen.set(open ? 1 : 0),
      rejected: (reason) => (reason === 'open' ? rejectedOpen : rejectedOverflow).inc(),
      ejected: () => ejections.inc(),
    };
  }

  /** `endpoint` is `host:port` */
  endpointHealthy(cluster: string, endpoint: string, healthy: boolean): void {
    this.endpointHealthyGauge.labels(cluster, endpoint).set(healthy ? 1 : 0);
  }

  /** Drops the series of an endpoint that left its cluster (DNS change, reload). */
  endpointRemoved(cluster: string, endpoint: string): void {
    this.endpointHealthyGauge.remove(cluster, endpoint);
  }

  configReload(result: ReloadResult): void {
    this.reloads.labels(result).inc();
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
