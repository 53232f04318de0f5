import { Registry, collectDefaultMetrics } from 'prom-client';
import type { SpanCounters } from '../tracing/exporter.js';
import { grpcStatusName, knownGrpcStatus } from '../proxy/grpc.js';
import { CellHistogram, CellValue, type Cell } from './cells.js';

// A sidecar adds well under a millisecond and upstreams rarely exceed the
// default 15 s route timeout, so the buckets span 0.5 ms to 30 s.
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export type ReloadResult = 'success' | 'failure';
export type RejectionReason = 'open' | 'overflow' | 'retry_budget';

/** Bound once per route at compile time; `request` runs on the hot path. */
export interface RouteMetrics {
  request(status: number, seconds: number): void;
  /** a gRPC request answered with this grpc-status (any number: unknown ones count as UNKNOWN) */
  grpc(code: number): void;
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

/** Cells per status code: the code label (`label` of the code) is the only one that varies per request. */
function codeCells(family: CellValue, fixed: string[], label: (code: number) => string = String): (status: number) => Cell {
  const cells: Cell[] = [];
  return (status) => (cells[status] ??= family.cell(...fixed, label(status)));
}

export class Metrics {
  readonly registry: Registry;
  readonly contentType: string;

  private readonly requests: CellValue;
  private readonly requestDuration: CellHistogram;
  private readonly grpcRequests: CellValue;
  private readonly upstreamRequests: CellValue;
  private readonly upstreamDuration: CellHistogram;
  private readonly retries: CellValue;
  private readonly activeRequests: CellValue;
  private readonly breakerOpenGauge: CellValue;
  private readonly breakerRejections: CellValue;
  private readonly outlierEjections: CellValue;
  private readonly endpointHealthyGauge: CellValue;
  private readonly reloads: CellValue;
  private readonly spansExported: CellValue;
  private readonly spansDropped: CellValue;

  /** `processSeries`: false in a worker thread, whose process CPU and memory the main thread already reports. */
  constructor(processSeries = true) {
    const r = (this.registry = new Registry());
    this.contentType = r.contentType;
    this.requests = new CellValue(r, 'counter', 'tandem_requests_total', 'Downstream requests answered, by listener, route and status code', ['listener', 'route', 'code']);
    this.requestDuration = new CellHistogram(r, 'tandem_request_duration_seconds', 'Time from the start of a downstream request to the end of its response', ['listener', 'route'], DURATION_BUCKETS);
    this.grpcRequests = new CellValue(r, 'counter', 'tandem_grpc_requests_total', 'gRPC requests answered, by listener, route and the grpc-status name the client got', ['listener', 'route', 'grpc_code']);
    this.upstreamRequests = new CellValue(r, 'counter', 'tandem_upstream_requests_total', 'Upstream attempts, by cluster and status code (502/504 when no response came back)', ['cluster', 'code']);
    this.upstreamDuration = new CellHistogram(r, 'tandem_upstream_request_duration_seconds', 'Duration of each upstream attempt', ['cluster'], DURATION_BUCKETS);
    this.retries = new CellValue(r, 'counter', 'tandem_upstream_retries_total', 'Retries sent to a cluster (the first try is not counted)', ['cluster']);
    this.activeRequests = new CellValue(r, 'gauge', 'tandem_upstream_active_requests', 'Requests in flight to a cluster', ['cluster']);
    // Every worker sees the same shared breaker; one that has not caught up yet must not hide it.
    this.breakerOpenGauge = new CellValue(r, 'gauge', 'tandem_circuit_breaker_open', '1 while the cluster error-rate breaker is open, else 0', ['cluster'], 'max');
    this.breakerRejections = new CellValue(r, 'counter', 'tandem_circuit_breaker_rejections_total', 'Requests refused by the circuit breaker, by reason (open, overflow), and retries skipped over the retry budget or maxRetries (retry_budget)', ['cluster', 'reason']);
    this.outlierEjections = new CellValue(r, 'counter', 'tandem_outlier_ejections_total', 'Endpoints ejected by outlier detection', ['cluster']);
    // Each worker probes on its own: healthy only while every one of them says so.
    this.endpointHealthyGauge = new CellValue(r, 'gauge', 'tandem_endpoint_healthy', '1 when the endpoint is healthy per active health checks, else 0', ['cluster', 'endpoint'], 'min');
    this.reloads = new CellValue(r, 'counter', 'tandem_config_reloads_total', 'Configuration reloads, by result', ['result']);
    this.spansExported = new CellValue(r, 'counter', 'tandem_tracing_spans_exported_total', 'Spans the OTLP collector accepted', []);
    this.spansDropped = new CellValue(r, 'counter', 'tandem_tracing_spans_dropped_total', 'Spans dropped: the queue was full, or their export failed', []);
    // Series present at zero from the start, so rate() and alerts see the first increment.
    this.reloads.cell('success');
    this.reloads.cell('failure');

    if (processSeries) collectDefaultMetrics({ register: r, prefix: 'tandem_' });
  }

  route(listener: string, route: string): RouteMetrics {
    const code = codeCells(this.requests, [listener, route]);
    const duration = this.requestDuration.cell(listener, route);
    const grpcCode = codeCells(this.grpcRequests, [listener, route], grpcStatusName);
    return {
      request(status, seconds) {
        code(status).value++;
        duration.observe(seconds);
      },
      grpc(status) {
        grpcCode(knownGrpcStatus(status)).value++;
      },
    };
  }

  cluster(cluster: string): ClusterMetrics {
    const code = codeCells(this.upstreamRequests, [cluster]);
    const duration = this.upstreamDuration.cell(cluster);
    // A reload binds the same cluster again and gets the same cells, so an
    // in-flight count carried over is kept.
    const retries = this.retries.cell(cluster);
    const active = this.activeRequests.cell(cluster);
    const breakerOpen = this.breakerOpenGauge.cell(cluster);
    const rejected: Record<RejectionReason, Cell> = {
      open: this.breakerRejections.cell(cluster, 'open'),
      overflow: this.breakerRejections.cell(cluster, 'overflow'),
      retry_budget: this.breakerRejections.cell(cluster, 'retry_budget'),
    };
    const ejections = this.outlierEjections.cell(cluster);
    return {
      attempt(status, seconds) {
        code(status).value++;
        duration.observe(seconds);
      },
      retry: () => void retries.value++,
      activeInc: () => void active.value++,
      activeDec: () => void active.value--,
      breakerOpen: (open) => void (breakerOpen.value = open ? 1 : 0),
      rejected: (reason) => void rejected[reason].value++,
      ejected: () => void ejections.value++,
    };
  }

  /** `endpoint` is `host:port` */
  endpointHealthy(cluster: string, endpoint: string, healthy: boolean): void {
    this.endpointHealthyGauge.cell(cluster, endpoint).value = healthy ? 1 : 0;
  }

  /** Drops the series of an endpoint that left its cluster (DNS change, reload). */
  endpointRemoved(cluster: string, endpoint: string): void {
    this.endpointHealthyGauge.remove(cluster, endpoint);
  }

  configReload(result: ReloadResult): void {
    this.reloads.cell(result).value++;
  }

  /** The span counters, their series at zero from the first time tracing is on. */
  tracing(): SpanCounters {
    const exported = this.spansExported.cell();
    const dropped = this.spansDropped.cell();
    return {
      exported: (n) => void (exported.value += n),
      dropped: (n) => void (dropped.value += n),
    };
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
