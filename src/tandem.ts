// The running process: what serves the listeners (a Fleet: this thread, or
// worker threads), the admin server, the reloads that swap the
// configuration (CONTRACT §5), and the drain that ends them (CONTRACT §6).

import { setTimeout as sleep } from 'node:timers/promises';
import { startAdmin, type AdminServer, type ReloadOutcome } from './admin/server.js';
import { redactedConfig } from './config/redact.js';
import type { Config } from './config/types.js';
import type { Listener } from './listener/listener.js';
import { createAccessLog } from './observability/access-log.js';
import { Metrics } from './observability/metrics.js';
import { log } from './observability/log.js';
import { ConfigReloader, type ReloadTarget } from './reload.js';
import { workerCount } from './workers/count.js';
import type { BoundListener, Fleet } from './workers/fleet.js';
import { LocalFleet } from './workers/local.js';
import { ThreadFleet } from './workers/threads.js';

export interface TandemOptions {
  /** admin port override (tests bind port 0) */
  adminPort?: number;
  /** the file the configuration came from: watched, and reloaded on SIGHUP and POST /reload */
  configFile?: string;
}

export class Tandem {
  readonly metrics: Metrics;
  private readonly fleet: Fleet;
  /** the listeners of a single-threaded tandem (workers: 1); empty with worker threads */
  readonly listeners: readonly Listener[];
  private current: { config: Config; version: number; loadedAt: Date };
  private draining = false;
  private admin: AdminServer | null = null;
  private reloader: ConfigReloader | null = null;
  private bound = false;
  private drained: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private markFinished!: () => void;
  /** resolves once a drain has run to the end and everything is closed */
  readonly finished = new Promise<void>((resolve) => (this.markFinished = resolve));

  constructor(config: Config) {
    this.current = { config, version: 1, loadedAt: new Date() };
    // with workers, this registry holds the main thread's series (reloads, the process); the workers' are summed into it
    this.metrics = new Metrics();
    const workers = workerCount(config.workers);
    if (workers > 1) {
      this.fleet = new ThreadFleet(config, workers, this.metrics);
      this.listeners = [];
    } else {
      const local = new LocalFleet(config, 1, this.metrics, createAccessLog(config.accessLog));
      this.fleet = local;
      this.listeners = local.listeners;
    }
  }

  get config(): Config {
    return this.current.config;
  }

  /** Binds the admin server, then every listener; rejects naming what could not bind. */
  async start(options: TandemOptions = {}): Promise<void> {
    const { address, port } = this.config.admin;
    try {
      this.admin = await startAdmin(address, options.adminPort ?? port, {
        ready: () => this.bound && !this.draining && this.fleet.serving,
        configView: () => ({
          version: this.current.version,
          loadedAt: this.current.loadedAt.toISOString(),
          config: redactedConfig(this.current.config),
        }),
        clustersView: () => this.fleet.clustersView(),
        metrics: this.fleet.metricsSource,
        reload: () => this.reload(),
        quit: () => void this.drain(),
      });
      await this.fleet.listen();
    } catch (err) {
      await this.close();
      throw err;
    }
    this.bound = true;
    if (options.configFile !== undefined && this.closing === null) {
      this.reloader = new ConfigReloader(options.configFile, this.reloadTarget(), this.metrics);
      this.reloader.watch();
    }
  }

  /** Each listener and the port it bound. */
  get boundListeners(): readonly BoundListener[] {
    return this.fleet.bound;
  }

  /** Re-reads the configuration file now (SIGHUP, POST /reload); the embedded default has none. */
  reload(): Promise<ReloadOutcome> {
    if (this.reloader !== null) return this.reloader.reload();
    const errors = ['the embedded default configuration cannot be reloaded: start tandem with --config FILE'];
    log.warn({ errors }, 'configuration reload refused');
    return Promise.resolve({ ok: false, errors });
  }

  private reloadTarget(): ReloadTarget {
    return {
      current: () => this.current,
      apply: async (config: Config): Promise<number> => {
        const version = this.current.version + 1;
        await this.fleet.apply(config, version);
        this.current = { config, version, loadedAt: new Date() };
        return version;
      },
    };
  }

  get adminPort(): number {
    return this.admin?.port ?? 0;
  }

  /** resolves once every access-log line so far is written */
  flushAccessLog(): Promise<void> {
    return this.fleet.flushAccessLog();
  }

  get isDraining(): boolean {
    return this.draining;
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
    this.draining = true;
    this.fleet.beginDrain();
    // SIGHUP and POST /reload still work while draining (docs/behaviour.md)
    this.reloader?.unwatch();
    const { delay, timeout } = this.config.drain;
    if (delay > 0) await sleep(delay);
    await this.fleet.finish(timeout);
    await this.close();
    this.markFinished();
  }

  /** Releases everything at once (after a drain, or when start fails). Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.release();
    return this.closing;
  }

  private async release(): Promise<void> {
    this.reloader?.close();
    await this.fleet.close();
    await this.admin?.close();
  }
}
