// workers > 1 (docs/workers.md): N worker threads, each a LocalFleet bound to
// the same ports with SO_REUSEPORT, so the kernel spreads connections over
// them. This side starts them, relays reloads and the drain, sums their
// metrics, writes their access-log batches, and replaces one that crashed.

import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Config } from '../config/types.js';
import { createAccessLog, type OwnedAccessLog } from '../observability/access-log.js';
import { log } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import type { BoundListener, Fleet, MetricsSource } from './fleet.js';
import type { ThreadCall, ThreadMessage, ThreadStart } from './messages.js';
import { allocateShared, clusterBreakerState, resetWorkerSlot, type SharedBuffers } from './shared-state.js';

// From dist/workers/ and from src/workers/ (the tests) alike: a thread always runs the compiled file.
const THREAD = fileURLToPath(new URL('../../dist/workers/thread.js', import.meta.url));

/** A worker that dies sooner than this after its start is crashing in a loop: its replacement waits. */
const STABLE_MS = 10_000;
/** Past drain.timeout, how long a worker may take to release and answer before it is terminated. */
const FINISH_GRACE_MS = 2_000;
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5_000;

/** A call as the caller writes it: the id is the worker's to number. */
type Request = ThreadCall extends infer C ? (C extends ThreadCall ? Omit<C, 'id'> : never) : never;
type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** One worker thread and the calls waiting for its replies. */
class ThreadWorker {
  readonly worker: Worker;
  readonly startedAt = performance.now();
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  /** resolves with the ports it bound; rejects with why it could not */
  readonly listening: Promise<BoundListener[]>;
  /** resolves with the exit code once the thread has ended */
  readonly exited: Promise<number>;
  /** the main thread asked it to end: its exit is no crash */
  stopping = false;
  /** bound, and not exited since */
  serving = false;
  /** the thread is gone: nothing posted to it would ever be answered */
  ended = false;

  constructor(start: ThreadStart, onLines: (bytes: Buffer) => void) {
    this.worker = new Worker(THREAD, { workerData: start });
    let listened!: (bound: BoundListener[]) => void;
    let refused!: (err: Error) => void;
    this.listening = new Promise((resolve, reject) => ((listened = resolve), (refused = reject)));
    // a failure to listen is the caller's to report; unhandled it would be a second report
    this.listening.catch(() => undefined);
    this.worker.on('message', (m: ThreadMessage) => {
      if (m.type === 'log') onLines(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength));
      else if (m.type === 'listening') {
        this.serving = true;
        listened(m.bound);
      }
      else if (m.type === 'failed') refused(new Error(m.message));
      else this.settle(m.id, m.error, m.value);
    });
    this.worker.on('error', (err) => {
      log.error({ worker: start.index, error: err.stack ?? err.message }, 'worker thread failed');
      refused(err);
    });
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        this.serving = false;
        this.ended = true;
        refused(new Error(`worker ${start.index} exited (code ${code}) before its listeners were bound`));
        for (const [id] of this.waiting) this.settle(id, `worker ${start.index} exited`);
        resolve(code);
      }),
    );
  }

  call(request: Request): Promise<unknown> {
    if (this.ended) return Promise.reject(new Error('the worker has exited'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...request, id });
    });
  }

  private settle(id: number, error: string | undefined, value?: unknown): void {
    const w = this.waiting.get(id);
    if (w === undefined) return;
    this.waiting.delete(id);
    if (error === undefined) w.resolve(value);
    else w.reject(new Error(error));
  }
}

export class ThreadFleet implements Fleet {
  private readonly accessLog: OwnedAccessLog;
  private readonly workers: ThreadWorker[] = [];
  /** the configuration every worker serves (its ports those the first worker bound) and its shared state */
  private current: { config: Config; version: number; shared: SharedBuffers };
  private ports: BoundListener[] = [];
  /** no more replacements: drain or close has begun */
  private ending = false;
  private readonly crashes: number[];
  private closing: Promise<void> | null = null;
  readonly metricsSource: MetricsSource;

  constructor(
    config: Config,
    private readonly count: number,
    metrics: Metrics,
  ) {
    this.current = { config, version: 1, shared: allocateShared(config, count) };
    this.crashes = new Array<number>(count).fill(0);
    this.accessLog = createAccessLog(config.accessLog);
    this.metricsSource = {
      contentType: metrics.contentType,
      render: () => this.renderMetrics(metrics),
    };
  }

  /**
   * The first worker binds alone, so that a port 0 in the file becomes one
   * port that the others then bind beside it.
   */
  async listen(): Promise<void> {
    const first = this.spawn(0);
    this.ports = await first.listening;
    this.current = { ...this.current, config: withPorts(this.current.config, this.ports) };
    for (let i = 1; i < this.count; i++) this.spawn(i);
    await Promise.all(this.workers.map((w) => w.listening));
  }

  get bound(): BoundListener[] {
    return this.ports;
  }

  get serving(): boolean {
    return this.workers.some((w) => w?.serving);
  }

  private spawn(index: number): ThreadWorker {
    const { config, version, shared } = this.current;
    const w = new ThreadWorker({ config, version, shared, index, count: this.count }, (bytes) => this.accessLog.writeLines(bytes));
    this.workers[index] = w;
    void w.exited.then((code) => this.exited(index, w, code));
    return w;
  }

  /** A worker that ended unasked is replaced; the others' connections are not touched. */
  private exited(index: number, w: ThreadWorker, code: number): void {
    if (w.stopping || this.ending || this.workers[index] !== w) return;
    const lived = performance.now() - w.startedAt;
    this.crashes[index] = lived < STABLE_MS ? this.crashes[index]! + 1 : 0;
    const wait = this.crashes[index] === 0 ? 0 : Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (this.crashes[index]! - 1));
    log.error({ worker: index, code, restartInMs: wait }, 'worker thread exited; starting a replacement');
    // what its requests held (places in the limits, a breaker trial, a bucket lock) is free again
    resetWorkerSlot(this.current.shared, { index, count: this.count });
    setTimeout(() => {
      if (this.ending) return;
      this.spawn(index).listening.then(
        () => log.info({ worker: index }, 'replacement worker listening'),
        (err: Error) => {
          if (!this.ending) log.error({ worker: index, error: err.message }, 'replacement worker could not listen');
        },
      );
    }, wait).unref();
  }

  /** The workers running now: one that crashed and waits for its replacement is left out (a replacement starts from `current`). */
  private live(): ThreadWorker[] {
    return this.workers.filter((w) => w !== undefined && !w.ended);
  }

  /** Each worker swaps in the new snapshot; resolves once all have. */
  async apply(config: Config, version: number): Promise<void> {
    const shared = allocateShared(config, this.count, { config: this.current.config, buffers: this.current.shared });
    this.current = { config: withPorts(config, this.ports), version, shared };
    // one that exits meanwhile is replaced from `current`, which already holds this configuration
    await Promise.all(this.live().map((w) => Promise.race([w.call({ op: 'apply', config: this.current.config, version, shared }), w.exited])));
  }

  /**
   * The first worker's view, with each endpoint's requests in flight summed
   * over all workers (health and ejection are each worker's own) and the
   * breaker's state read from the memory every worker shares.
   */
  async clustersView(): Promise<unknown[]> {
    const views = (await settled(this.live().map((w) => w.call({ op: 'clusters' })))) as ClusterView[][];
    const [first, ...rest] = views;
    if (first === undefined) return [];
    for (const c of first) c.breaker = clusterBreakerState(this.current.shared, c.name, this.count);
    for (const view of rest) {
      for (const c of view) {
        const mine = first.find((f) => f.name === c.name);
        for (const e of c.endpoints) {
          const same = mine?.endpoints.find((m) => m.address === e.address && m.port === e.port);
          if (same !== undefined) same.activeRequests += e.activeRequests;
        }
      }
    }
    return first;
  }

  private async renderMetrics(own: Metrics): Promise<string> {
    const theirs = (await settled(this.live().map((w) => w.call({ op: 'metrics' })))) as MetricsJson[];
    return AggregatorRegistry.aggregate([await own.registry.getMetricsAsJSON(), ...theirs]).metrics();
  }

  beginDrain(): void {
    for (const w of this.live()) void w.call({ op: 'beginDrain' }).catch(() => undefined);
  }

  async finish(timeoutMs: number): Promise<void> {
    this.ending = true;
    const all = this.live();
    for (const w of all) w.stopping = true;
    // A worker that dies mid-drain has nothing left to finish; one that does
    // not answer by the drain's deadline (a blocked event loop) is cut by close().
    const finished = Promise.all(all.map((w) => Promise.race([w.call({ op: 'finish', timeoutMs }).catch(() => undefined), w.exited])));
    const deadline = new AbortController();
    await Promise.race([finished, sleep(timeoutMs + FINISH_GRACE_MS, undefined, { signal: deadline.signal }).catch(() => undefined)]);
    deadline.abort();
    await this.close();
  }

  close(): Promise<void> {
    this.closing ??= this.release();
    return this.closing;
  }

  private async release(): Promise<void> {
    this.ending = true;
    await Promise.all(
      this.live().map((w) => {
        w.stopping = true;
        return w.worker.terminate();
      }),
    );
    await this.accessLog.close();
  }

  /** Every worker's batch handed over (they arrive before the replies), then written. */
  async flushAccessLog(): Promise<void> {
    await settled(this.live().map((w) => w.call({ op: 'flush' })));
    await this.accessLog.flush();
  }
}

interface ClusterView {
  name: string;
  breaker: string;
  endpoints: Array<{ address: string; port: number; activeRequests: number }>;
}

/** The answers of the workers that answered: one that just crashed is left out, not an error. */
async function settled(calls: Promise<unknown>[]): Promise<unknown[]> {
  const results = await Promise.allSettled(calls);
  return results.filter((r) => r.status === 'fulfilled').map((r) => r.value);
}

function withPorts(config: Config, ports: readonly BoundListener[]): Config {
  return {
    ...config,
    listeners: config.listeners.map((l) => ({ ...l, port: ports.find((p) => p.name === l.name)?.port ?? l.port })),
  };
}
