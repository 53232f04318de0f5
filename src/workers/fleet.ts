// What serves the listeners: one set of them in this thread (LocalFleet), or
// one in each of N worker threads (ThreadFleet). The Tandem around it owns
// the admin API, reloads and the drain's timing, the same for both
// (docs/workers.md).

import type { Config } from '../config/types.js';

/** One listener and the port it got (port 0 in the config binds any). */
export interface BoundListener {
  name: string;
  port: number;
}

/** What /metrics renders. */
export interface MetricsSource {
  readonly contentType: string;
  render(): Promise<string>;
}

export interface Fleet {
  /** binds every listener; rejects naming the one that could not bind */
  listen(): Promise<void>;
  readonly bound: readonly BoundListener[];
  /** some thread is serving the listeners (one of several workers may be down, being replaced) */
  readonly serving: boolean;
  /** serves `config` (a valid reload) from now on; `version` is its number */
  apply(config: Config, version: number): Promise<void>;
  /** what /metrics renders: this thread's registry, or the workers' summed */
  readonly metricsSource: MetricsSource;
  /** the /clusters view */
  clustersView(): Promise<unknown[]>;
  /** every answer from now on closes its connection (the drain has begun) */
  beginDrain(): void;
  /**
   * The drain's last steps: stop accepting, close idle connections, give
   * in-flight requests `timeoutMs` then cut them, send the spans still held
   * within what is left, and release everything.
   */
  finish(timeoutMs: number): Promise<void>;
  /** releases everything at once (start failed, or after finish); idempotent */
  close(): Promise<void>;
  /** resolves once every access-log line so far is written */
  flushAccessLog(): Promise<void>;
}
