// The running process: one snapshot, its listeners, the admin server, the
// reloads that swap the snapshot (CONTRACT §5), and the drain that ends them
// (CONTRACT §6).

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAdmin, type AdminServer, type ReloadOutcome } from './admin/server.js';
import { redactedConfig } from './config/redact.js';
import type { Config } from './config/types.js';
import { Listener } from './listener/listener.js';
import { createAccessLog, type AccessLog } from './observability/access-log.js';
import { Metrics } from './observability/metrics.js';
import { log } from './observability/log.js';
import { ConfigReloader, type ReloadTarget } from './reload.js';
import { closeCluster, closeSnapshot, compileSnapshot, retiredClusters } from './snapshot.js';
import type { ClusterRuntime, Snapshot } from './snapshot-types.js';
import { Tracing } from './tracing/tracer.js';
import { allocateShared, SOLE_WORKER } from './workers/shared-state.js';

/** How often a retired cluster is checked for in-flight requests before its pools close. */
const RETIRED_POLL_MS = 50;

export interface TandemOptions {
  /** admin port override (tests bind port 0) */
  adminPort?: number;
  /** the file the configuration came from: watched, and reloaded on SIGHUP and POST /reload */
  configFile?: string;
}

export class Tandem {
  readonly metrics = new Metrics();
  private readonly tracing = new Tracing(this.metrics);
  readonly listeners: Listener[] = [];
  private readonly drainState = { draining: false };
  private readonly accessLog: AccessLog;
  private snapshot: Snapshot;
  private admin: AdminServer | null = null;
  private reloader: ConfigReloader | null = null;
  /** clusters a reload removed or replaced, each closing once its in-flight requests end */
  private readonly retiring = new Set<Promise<void>>();
  /** cuts the wait of retiring clusters short at close */
  private readonly closed = new AbortController();
  private bound = false;
  private drained: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private markFinished!: () => void;
  /** resolves once a drain has run to the end and everything is closed */
  readonly finished = new Promise<void>((resolve) => (this.markFinished = resolve));

  constructor(config: Config) {
    this.accessLog = createAccessLog(config.accessLog);
    this.snapshot = compileSnapshot(config, this.metrics, 1, undefined, this.tracing.tracer(config.tracing), allocateShared(config, 1), SOLE_WORKER);
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

  get config(): Config {
    return this.snapshot.config;
  }

  /** Binds the admin server, then every listener; rejects naming what could not bind. */
  async start(options: TandemOptions = {}): Promise<void> {
    const { address, port } = this.config.admin;
    try {
      this.admin = await startAdmin(address, options.adminPort ?? port, {
        ready: () => this.bound && !this.drainState.draining,
        configView: () => ({
          version: this.snapshot.version,
          loadedAt: this.snapshot.loadedAt.toISOString(),
          config: redactedConfig(this.snapshot.config),
        }),
        clustersView: () => this.clustersView(),
        metrics: this.metrics,
        reload: () => this.reload(),
        quit: () => void this.drain(),
      });
      await Promise.all(this.listeners.map((l) => l.listen()));
    } catch (err) {
      await this.close();
      throw err;
    }
    this.bound = true;
    if (options.configFile !== undefined && !this.closed.signal.aborted) {
      this.reloader = new ConfigReloader(options.configFile, this.reloadTarget(), this.metrics);
      this.reloader.watch();
    }
  }

  /** Re-reads the configuration file now (SIGHUP, POST /reload); the embedded default has none. */
  reload(): Promise<ReloadOutcome> {
    if (this.reloader !== null) return this.reloader.reload();
    const errors = ['the embedded default configuration cannot be reloaded: start tandem with --config FILE'];
    log.warn({ errors }, 'configuration reload refused');
    return Promise.resolve({ ok: false, errors });
  }

  /**
   * What the reloader swaps: a new snapshot (unchanged clusters carried
   * over) becomes every listener's for new requests; in-flight requests keep
   * the objects they already hold.
   */
  private reloadTarget(): ReloadTarget {
    return {
      current: () => this.snapshot,
      apply: (config: Config): number => {
        const previous = this.snapshot;
        const shared = allocateShared(config, 1, { config: previous.config, buffers: previous.shared });
        const next = compileSnapshot(config, this.metrics, previous.version + 1, previous, this.tracing.tracer(config.tracing), shared, SOLE_WORKER);
        this.snapshot = next;
        for (const l of this.listeners) l.ctx.listener = next.listeners.find((n) => n.config.name === l.name)!;
        for (const c of retiredClusters(previous, next)) this.retire(c);
        return next.version;
      },
    };
  }

  /** Closes a cluster the new snapshot dropped, once no request of the old one uses it. */
  private retire(c: ClusterRuntime): void {
    const done = whenIdle(c, this.closed.signal).then(() => closeCluster(c));
    this.retiring.add(done);
    void done.finally(() => this.retiring.delete(done));
  }

  get adminPort(): number {
    return this.admin?.port ?? 0;
  }

  /** resolves once every access-log line so far is written */
  flushAccessLog(): Promise<void> {
    return this.accessLog.flush();
  }

  get isDraining(): boolean {
    return this.drainState.draining;
  }

  /**
   * CONTRACT §6: not ready at once; keep accepting for `drain.delay`; then
   * stop accepting, close idle connections, answer with `connection: close`,
   * give in-flight requests `drain.timeout`, and close. Idempotent.
   */
  drain(): Promise<void> {
    this.drained ??= this.runDrain();
    return this.drained;
  }

  private async runDrain(): Promise<void> {
    this.drainState.draining = true;
    // SIGHUP and POST /reload still work while draining (docs/behaviour.md)
    this.reloader?.unwatch();
    const { delay, timeout } = this.config.drain;
    if (delay > 0) await sleep(delay);
    // The deadline timer is cancelled once everything closed by itself: an
    // embedding program must not stay alive for the rest of drain.timeout.
    const stop = new AbortController();
    const closed = Promise.all(this.listeners.map((l) => l.stopAccepting()));
    const allTunnelsClosed = Promise.all(this.listeners.map((l) => tunnelsClosed(l, stop.signal)));
    const started = performance.now();
    const deadline = sleep(timeout, 'timeout' as const, { signal: stop.signal }).catch(() => 'stopped' as const);
    const outcome = await Promise.race([Promise.all([closed, allTunnelsClosed]), deadline]);
    stop.abort();
    if (outcome === 'timeout') for (const l of this.listeners) l.destroyAll();
    // the spans of every request answered, sent within what is left of drain.timeout
    await this.tracing.flush(Math.max(0, timeout - (performance.now() - started)));
    await this.close();
    this.markFinished();
  }

  /** Releases everything at once (after a drain, or when start fails). Idempotent: pools close once. */
  close(): Promise<void> {
    this.closing ??= this.release();
    return this.closing;
  }

  private async release(): Promise<void> {
    this.reloader?.close();
    this.closed.abort();
    for (const l of this.listeners) {
      l.destroyAll();
      l.server.close();
    }
    await Promise.all([closeSnapshot(this.snapshot), ...this.retiring]);
    await this.admin?.close();
    await this.accessLog.close();
    this.tracing.close();
  }

  private clustersView(): unknown[] {
    const now = performance.now();
    return [...this.snapshot.clusters.values()].map(({ cluster, breaker }) => ({
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
    }));
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
