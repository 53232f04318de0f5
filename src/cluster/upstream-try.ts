// One try sent to one endpoint, as its cluster accounts for it: in flight
// from its start, waiting for a connection until it gets one, and at its end
// an attempt metric, a latency sample for peak_ewma and a verdict for outlier
// detection. Forwarded tries (proxy/attempt.ts) and WebSocket upgrades
// (listener/upgrade.ts) both extend it, so the cluster sees them alike.

import type { Failure } from '../proxy/attempt.js';
import type { ClusterRuntime } from '../snapshot-types.js';
import type { Endpoint } from './endpoint.js';

export class UpstreamTry {
  readonly startedHr = performance.now();
  /** the upstream's answer went on to the client: from here on failures abort the client */
  committed = false;
  /** how the try failed, if it did (a response cut mid-body is a reset) */
  failure: Failure | null = null;
  /** the CLIENT span's id: null when the request is not traced */
  spanId: string | null = null;
  /** a gRPC request's answer: the grpc-status in its headers or trailers, once seen */
  grpcStatus: number | null = null;
  /** counted in the cluster's tries waiting for a connection */
  private queued = true;
  /** peak_ewma has this try's time to its answer's head */
  private latencyObserved = false;

  constructor(
    readonly cluster: ClusterRuntime,
    readonly endpoint: Endpoint,
  ) {
    endpoint.begin();
    cluster.metrics.activeInc();
    cluster.limits.queue();
  }

  /** A connection was assigned (or the try ended without one): it no longer waits (maxPendingRequests). */
  protected unqueue(): void {
    if (!this.queued) return;
    this.queued = false;
    this.cluster.limits.unqueue();
  }

  /**
   * The answer's head arrived. peak_ewma weighs this time, as Linkerd does: a
   * long stream says nothing about how slow its endpoint is.
   */
  protected answered(): void {
    const latency = this.endpoint.latency;
    if (latency === null) return;
    latency.observe(performance.now() - this.startedHr);
    this.latencyObserved = true;
  }

  /**
   * Ends the try's accounting with the status it got (tandem's 502/504 when
   * none came back); `failed` is outlier detection's verdict on the endpoint,
   * null when the try says nothing about it. Returns the try's duration in ms.
   */
  finishTry(status: number, failed: boolean | null): number {
    const ms = performance.now() - this.startedHr;
    const { cluster, endpoint } = this;
    endpoint.end();
    // a try without an answer counts for peak_ewma by the time it took to fail
    if (!this.latencyObserved) endpoint.latency?.observe(ms);
    this.unqueue();
    cluster.metrics.activeDec();
    cluster.metrics.attempt(status, ms / 1000);
    if (cluster.outlier !== null && failed !== null) cluster.outlier.report(endpoint, failed);
    return ms;
  }
}
