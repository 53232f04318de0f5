// Which requests are traced and the spans they leave (docs/observability.md#tracing).
// A Tracer belongs to one configuration load; without `tracing` there is
// none, and the request path then only checks for null.

import { isDeepStrictEqual } from 'node:util';
import type { UpstreamTry } from '../cluster/upstream-try.js';
import type { TracingConfig } from '../config/types.js';
import type { Metrics } from '../observability/metrics.js';
import type { RequestRecord } from '../proxy/exchange.js';
import { PROTOCOL_VERSION } from '../proxy/inbound.js';
import { isValidTraceparent, newSpanId, newTraceparent, sampledFlag } from '../proxy/request-id.js';
import { BatchExporter } from './exporter.js';
import { ClientSpan, ServerSpan, epochMs } from './spans.js';

/** The trace fields of a request, which begin() fills. */
export interface TraceFields {
  traceId: string;
  /** what the upstream receives (forwarded tries replace it with their own) */
  traceparent: string;
  /** the SERVER span's id; null when the request is not sampled */
  spanId: string | null;
  parentSpanId: string | null;
}

export class Tracer {
  constructor(
    private readonly sampling: number,
    private readonly exporter: BatchExporter,
  ) {}

  /**
   * A valid incoming traceparent decides by its sampled flag, and a sampled
   * one becomes the SERVER span's parent; an unsampled one goes upstream
   * unchanged. Otherwise tandem starts a trace, sampled at `sampling`.
   */
  begin(rec: TraceFields, incoming: string | string[] | undefined): void {
    if (typeof incoming === 'string' && isValidTraceparent(incoming)) {
      const traceId = incoming.slice(3, 35);
      rec.traceId = traceId;
      if (!sampledFlag(incoming)) {
        rec.traceparent = incoming;
        return;
      }
      const spanId = newSpanId();
      rec.parentSpanId = incoming.slice(36, 52);
      rec.spanId = spanId;
      rec.traceparent = `00-${traceId}-${spanId}-01`;
      return;
    }
    const sampled = this.sampling >= 1 || Math.random() < this.sampling;
    const traceparent = newTraceparent(sampled);
    rec.traceparent = traceparent;
    rec.traceId = traceparent.slice(3, 35);
    // the new traceparent's parent id is the SERVER span itself
    if (sampled) rec.spanId = traceparent.slice(36, 52);
  }

  /** The SERVER span of a sampled request, ended now. */
  server(rec: RequestRecord, status: number, endHr: number): void {
    const inbound = rec.inbound;
    const headers = rec.headers;
    this.exporter.add(
      new ServerSpan(
        rec.traceId,
        rec.spanId!,
        rec.parentSpanId,
        epochMs(rec.startedHr),
        epochMs(endHr),
        inbound?.method ?? '',
        inbound?.target ?? '',
        rec.ctx.proto,
        inbound?.authority,
        rec.clientIp,
        headers['user-agent'],
        inbound === null ? '1.1' : PROTOCOL_VERSION[inbound.protocol],
        status,
        rec.errorCode,
        rec.route === null ? null : rec.route.name,
        rec.cluster === null ? null : rec.cluster.cluster.name,
        rec.flags === null ? NO_FLAGS : rec.flags.slice(),
        rec.requestId,
        rec.grpc,
        rec.grpcStatus,
      ),
    );
  }

  /** The CLIENT span of a try (forwarded or an upgrade), ended now; `status` is what its cluster counted. */
  client(rec: RequestRecord, attempt: UpstreamTry, status: number): void {
    const failure = attempt.failure;
    const answered = attempt.committed || failure === 'status';
    const errorType = failure !== null && failure !== 'status' ? FAILURE_ERROR[failure] : status >= 500 && answered ? String(status) : null;
    this.exporter.add(
      new ClientSpan(
        rec.traceId,
        attempt.spanId!,
        rec.spanId!,
        epochMs(attempt.startedHr),
        epochMs(performance.now()),
        rec.inbound!.method,
        attempt.endpoint.address,
        attempt.endpoint.port,
        rec.attempts - 1,
        answered ? status : 0,
        errorType,
        rec.grpc ? rec.inbound!.target : null,
        attempt.grpcStatus,
      ),
    );
  }
}

const NO_FLAGS: readonly string[] = [];

/**
 * Makes `t` a CLIENT span of `rec`'s trace, and, when `slot` (from
 * headerSlot) says where the request's traceparent is in `headers`, the
 * parent of what the upstream records.
 */
export function traceTry(rec: RequestRecord, t: UpstreamTry, headers: string[], slot: number): void {
  const spanId = newSpanId();
  t.spanId = spanId;
  if (slot !== -1) headers[slot] = `00-${rec.traceId}-${spanId}-01`;
}

/** tandem's error code for a try that got no (complete) answer */
const FAILURE_ERROR = {
  'connect-failure': 'upstream_connect_failure',
  reset: 'upstream_reset',
  timeout: 'upstream_timeout',
} as const;

/**
 * Tracing across configuration loads: one exporter while the collector,
 * its headers, timeout and the service name stay the same. A reload that
 * changes them, or turns tracing off, retires the exporter: it sends what
 * it holds (and what requests still in flight add) to its own collector.
 */
export class Tracing {
  private exporter: BatchExporter | null = null;
  private readonly retired = new Set<BatchExporter>();

  constructor(private readonly metrics: Metrics) {}

  /** The tracer of a configuration load; null when tracing is off. */
  tracer(cfg: TracingConfig | undefined): Tracer | null {
    const current = this.exporter;
    if (current !== null && (cfg === undefined || !isDeepStrictEqual(current.otlp, cfg.otlp) || current.serviceName !== cfg.serviceName)) {
      this.exporter = null;
      this.retire(current);
    }
    if (cfg === undefined) return null;
    this.exporter ??= new BatchExporter(cfg.otlp, cfg.serviceName, this.metrics.tracing());
    return new Tracer(cfg.sampling, this.exporter);
  }

  private retire(e: BatchExporter): void {
    this.retired.add(e);
    void e.retire().then(() => this.retired.delete(e));
  }

  /** The drain: every exporter sends what it holds, within `withinMs`. */
  async flush(withinMs: number): Promise<void> {
    const all = [...this.retired];
    if (this.exporter !== null) all.push(this.exporter);
    await Promise.all(all.map((e) => e.flush(withinMs)));
  }

  close(): void {
    this.exporter?.close();
    for (const e of this.retired) e.close();
    this.retired.clear();
  }
}
