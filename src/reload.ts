// Configuration reload (CONTRACT §5): read the file, validate it, and hand a
// valid configuration to the running process; an invalid one changes
// nothing. Reloads run one at a time, whatever started them (the file
// watcher, SIGHUP, POST /reload).

import { isDeepStrictEqual } from 'node:util';
import { formatConfigError } from './config/errors.js';
import { loadConfigTextIsolated } from './config/load-isolated.js';
import { readConfigFile } from './config/read.js';
import type { Config, ListenerConfig } from './config/types.js';
import { watchConfigDirectory, type ConfigWatcher } from './config/watch.js';
import type { ReloadOutcome } from './admin/server.js';
import { log } from './observability/log.js';
import type { Metrics } from './observability/metrics.js';

/** What a reload acts on: the running process. */
export interface ReloadTarget {
  /** the configuration running now and its version */
  current(): { readonly config: Config; readonly version: number };
  /** swaps in a valid configuration that `restartNeeded` accepted; returns the new version */
  apply(config: Config): Promise<number>;
}

export class ConfigReloader {
  private queue: Promise<unknown> = Promise.resolve();
  /** the text last read from the file, valid or not: a watcher event that finds it again is no change */
  private lastText: string | undefined;
  private watcher: ConfigWatcher | null = null;
  private closed = false;

  constructor(
    readonly file: string,
    private readonly target: ReloadTarget,
    private readonly metrics: Metrics,
  ) {}

  /** Starts watching the file's directory; changes are applied after the quiet period. */
  watch(): void {
    this.watcher ??= watchConfigDirectory(this.file, () => void this.enqueue(false));
  }

  /** Reloads now (SIGHUP, POST /reload), even when the text looks unchanged. */
  reload(): Promise<ReloadOutcome> {
    return this.enqueue(true).then((outcome) => outcome!);
  }

  /** Stops watching; SIGHUP and POST /reload still reload. */
  unwatch(): void {
    this.watcher?.close();
    this.watcher = null;
  }

  /** tandem is shutting down: no more watching, and a reload still loading is not applied. */
  close(): void {
    this.closed = true;
    this.unwatch();
  }

  private enqueue(explicit: boolean): Promise<ReloadOutcome | null> {
    const run = this.queue.then(() => this.run(explicit));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** null: a watcher event that found nothing new */
  private async run(explicit: boolean): Promise<ReloadOutcome | null> {
    if (!explicit && this.watcher === null) return null;
    const text = await readConfigFile(this.file);
    if (typeof text !== 'string') return this.fail(text.errors.map(formatConfigError));
    if (!explicit && text === this.lastText) return null;
    this.lastText = text;
    const loaded = await loadConfigTextIsolated(text, this.file);
    // Closed while the file loaded: a new snapshot now would open pools nobody closes.
    if (this.closed) return explicit ? this.fail(['tandem is shutting down: the configuration was not applied']) : null;
    if (!loaded.ok) return this.fail(loaded.errors.map(formatConfigError));
    const current = this.target.current();
    const refused = restartNeeded(current.config, loaded.config);
    if (refused.length > 0) return this.fail(refused.map((message) => `${this.file}: ${message}`));
    if (isDeepStrictEqual(loaded.config, current.config)) {
      // A touch, or the first event after start: nothing to swap.
      if (!explicit) return null;
      this.metrics.configReload('success');
      log.info({ file: this.file, version: current.version }, 'configuration reloaded: unchanged');
      return { ok: true, version: current.version };
    }
    let version: number;
    try {
      version = await this.target.apply(loaded.config);
    } catch (err) {
      // a reload is started unawaited (watcher, SIGHUP): a failure must end here, logged and counted
      return this.fail([`${this.file}: the configuration could not be applied: ${(err as Error).message}`]);
    }
    this.metrics.configReload('success');
    log.info({ file: this.file, version }, 'configuration reloaded');
    return { ok: true, version };
  }

  private fail(errors: string[]): ReloadOutcome {
    this.metrics.configReload('failure');
    log.error({ file: this.file, errors }, 'configuration reload failed; nothing changed');
    return { ok: false, errors };
  }
}

/**
 * What a reload cannot change without rebinding or reopening: the listener
 * set and each listener's address, port and limits (Node fixes the limits
 * when the server is created), the number of workers, the admin address and
 * the access-log sink.
 * Such a file is refused as a whole; routes, clusters and drain settings
 * reload.
 */
export function restartNeeded(current: Config, next: Config): string[] {
  const problems: string[] = [];
  const restart = 'cannot change on reload; restart tandem to apply it';
  const names = (ls: ListenerConfig[]): string[] => ls.map((l) => l.name).sort();
  if (!isDeepStrictEqual(names(current.listeners), names(next.listeners))) {
    problems.push(`listeners: the set of listeners (${names(next.listeners).join(', ')}) ${restart}`);
  } else {
    // Everything but the routes is fixed when the server is created.
    const bound = (l: ListenerConfig): ListenerConfig => ({ ...l, routes: [] });
    for (const l of next.listeners) {
      const old = current.listeners.find((c) => c.name === l.name)!;
      if (!isDeepStrictEqual(bound(old), bound(l))) problems.push(`listeners.${l.name}: address, port, limits or tls ${restart}`);
    }
  }
  if (current.workers !== next.workers) problems.push(`workers: ${restart}`);
  if (!isDeepStrictEqual(current.admin, next.admin)) problems.push(`admin: ${restart}`);
  if (!isDeepStrictEqual(current.accessLog, next.accessLog)) problems.push(`accessLog: ${restart}`);
  return problems;
}
