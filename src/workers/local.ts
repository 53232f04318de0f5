// The listeners and the snapshot they serve, in this thread: all of tandem
// with workers: 1, and what each worker thread runs with more.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/types.js';
import { Listener } from '../listener/listener.js';
import type { AccessLog } from '../observability/access-log.js';
import type { Metrics } from '../observability/metrics.js';
import { closeCluster, closeSnapshot, compileSnapshot, retiredClusters } from '../snapshot.js';
import type { ClusterRuntime, Snapshot } from '../snapshot-types.js';
import { Tracing } from '../tracing/tracer.js';
import type { BoundListener, Fleet } from './fleet.js';
import { allocateShared, SOLE_WORKER, type SharedBuffers, type WorkerSlot } from './shared-state.js';

/** Where a LocalFleet serves: alone in the process, or as one worker thread of several. */
export interface Placement {
  /** the state shared with the other workers (allocateShared for all of them) */
  shared: SharedBuffers;
  slot: WorkerSlot;
}

/** How often a retired cluster is checked for in-flight requests before its pools close. */
const RETIRED_POLL_MS = 50;

export class LocalFleet implements Fleet {
  private readonly tracing: Tracing;
  readonly listeners: Listener[] = [];
  private readonly drainState = { draining: false };
  private snapshot: Snapshot;
  /** clusters a reload removed or replaced, each closing once its in-flight requests end */
  private readonly retiring = new Set<Promise<void>>();
  /** cuts the wait of retiring clusters short at close */
  private readonly closed = new AbortController();
  private closing: Promise<void> | null = null;

  constructor(
    config: Config,
    version: number,
    private readonly metrics: Metrics,
    private readonly accessLog: AccessLog,
    /** absent: the only thread serving, its shared state its own */
    private readonly placement?: Placement,
  ) {
    this.tracing = new Tracing(metrics);
    const shared = placement?.shared ?? allocateShared(config, 1);
    this.snapshot = compileSnapshot(config, metrics, version, undefined, this.tracing.tracer(config.tracing), shared, this.slot);
    for (const compiled of this.snapshot.listeners) {
      this.listeners.push(
        new Listener({
          listener: compiled,
          proto: compiled.config.tls === undefined ? 'http' : 'https',
          accessLog: this.accessLog,
          drain: this.drainState,
        }),
      );
    }
  }

  async listen(): Promise<void> {
    // beside the other workers' sockets on the same ports (SO_REUSEPORT)
    await Promise.all(this.listeners.map((l) => l.listen(this.placement !== undefined)));
  }

  /** once bound, until the drain closes it: this thread is the only one */
  readonly serving = true;

  get metricsSource(): Metrics {
    return this.metrics;
  }

  get bound(): BoundListener[] {
    return this.listeners.map((l) => ({ name: l.name, port: l.port }));
  }

  private get slot(): WorkerSlot {
    return this.placement?.slot ?? SOLE_WORKER;
  }

  /**
   * A new snapshot (unchanged clusters carried over) becomes every
   * listener's for new requests; in-flight requests keep the objects they
   * already hold. A worker thread gets the shared state from the main
   * thread, which allocated it for every worker.
   */
  apply(config: Config, version: number, shared?: SharedBuffers): Promise<void> {
    const previous = this.snapshot;
    const buffers = shared ?? allocateShared(config, 1, { config: previous.config, buffers: previous.shared });
    const next = compileSnapshot(config, this.metrics, version, previous, this.tracing.tracer(config.tracing), buffers, this.slot);
    this.snapshot = next;
    for (const l of this.listeners) l.ctx.listener = next.listeners.find((n) => n.config.name === l.name)!;
    for (const c of retiredClusters(previous, next)) this.retire(c);
    return Promise.resolve();
  }

  /** Closes a cluster the new snapshot dropped, once no request of the old one uses it. */
  private retire(c: ClusterRuntime): void {
    const done = whenIdle(c, this.closed.signal).then(() => closeCluster(c));
    this.retiring.add(done);
    void done.finally(() => this.retiring.delete(done));
  }

  beginDrain(): void {
    this.drainState.draining = true;
  }

  async finish(timeoutMs: number): Promise<void> {
    this.beginDrain();
    // The deadline timer is cancelled once everything closed by itself: an
    // embedding program must not stay alive for the rest of drain.timeout.
    const stop = new AbortController();
    const closed = Promise.all(this.listeners.map((l) => l.stopAccepting()));
    const allTunnelsClosed = Promise.all(this.listeners.map((l) => tunnelsClosed(l, stop.signal)));
    const started = performance.now();
    const deadline = sleep(timeoutMs, 'timeout' as const, { signal: stop.signal }).catch(() => 'stopped' as const);
    const outcome = await Promise.race([Promise.all([closed, allTunnelsClosed]), deadline]);
    stop.abort();
    if (outcome === 'timeout') for (const l of this.listeners) l.destroyAll();
    // the spans of every request answered, sent within what is left of the timeout
    await this.tracing.flush(Math.max(0, timeoutMs - (performance.now() - started)));
    await this.close();
  }

  close(): Promise<void> {
    this.closing ??= this.release();
    return this.closing;
  }

  private async release(): Promise<void> {
    this.closed.abort();
    for (const l of this.listeners) {
      l.destroyAll();
      l.server.close();
    }
    await Promise.all([closeSnapshot(this.snapshot), ...this.retiring]);
    await this.accessLog.close();
    this.tracing.close();
  }

  /**
   * Catches every breaker up with a change another worker made, so that
   * this worker's breaker gauge says what all of them see (a worker that has
   * not served since would still report the state it last acted on).
   */
  syncBreakers(): void {
    for (const { breaker } of this.snapshot.clusters.values()) void breaker?.state;
  }

  flushAccessLog(): Promise<void> {
    return this.accessLog.flush();
  }

  clustersView(): Promise<unknown[]> {
    const now = performance.now();
    return Promise.resolve(
      [...this.snapshot.clusters.values()].map(({ cluster, breaker }) => ({
        name: cluster.name,
        breaker: breaker?.state ?? 'closed',
        panic: cluster.panicking,
        endpoints: cluster.endpoints.map((e) => ({
          address: e.address,
          port: e.port,
          healthy: e.healthy,
          ejected: e.ejected,
          activeRequests: e.activeRequests,
          // peak_ewma clusters only: the estimate the balancer compares, in ms
          ...(e.latency === null ? {} : { latencyEstimateMs: Math.round(e.latency.at(now) * 1000) / 1000 }),
        })),
      })),
    );
  }
}

/** Resolves once no request holds the cluster (or at `stop`). */
async function whenIdle(c: ClusterRuntime, stop: AbortSignal): Promise<void> {
  while ((c.limits.active > 0 || c.cluster.activeRequests > 0) && !stop.aborted) {
    await sleep(RETIRED_POLL_MS, undefined, { ref: false, signal: stop }).catch(() => undefined);
  }
}

/** Resolves when every WebSocket tunnel of a listener has closed. */
async function tunnelsClosed(l: Listener, stop: AbortSignal): Promise<void> {
  while (l.tunnels.size > 0 && !stop.aborted) await sleep(50);
}
