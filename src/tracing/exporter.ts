// The span queue and its export (docs/observability.md#tracing): spans wait
// in a bounded queue and leave in batches, over a connection of the
// exporter's own (never the proxy's upstream pools). A request only ever
// pushes onto the queue: a slow or dead collector costs dropped spans,
// counted, never a delayed or failed request.

import type { Agent, ClientRequest } from 'node:http';
import https from 'node:https';
import { after, cancel, now, type Timer } from '../clock.js';
import type { OtlpConfig } from '../config/types.js';
import { http } from '../node-http.js';
import { encodeTraces } from './otlp.js';
import type { QueuedSpan } from './spans.js';

export const BATCH_SIZE = 512;
export const BATCH_DELAY_MS = 5000;
export const QUEUE_LIMIT = 2048;
// A failing collector is tried again after 1 s, doubling up to 30 s.
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30_000;

export interface SpanCounters {
  exported(n: number): void;
  dropped(n: number): void;
}

export class BatchExporter {
  private queue: QueuedSpan[] = [];
  /** now() when the oldest queued span arrived */
  private oldestAt = 0;
  private timer: Timer | null = null;
  private timerAt = 0;
  private inFlight: Promise<void> | null = null;
  private request: ClientRequest | null = null;
  private backoffMs = 0;
  private retryAt = 0;
  /** a flush is under way: batches go at once, backoff or not */
  private flushing = false;
  /** a reload replaced it: its connection closes whenever its queue is empty */
  private retired = false;
  private closed = false;
  private readonly url: URL;
  private readonly agent: Agent;

  constructor(
    readonly otlp: OtlpConfig,
    readonly serviceName: string,
    private readonly counters: SpanCounters,
  ) {
    this.url = new URL(otlp.endpoint);
    this.agent = new (this.url.protocol === 'https:' ? https : http).Agent({ keepAlive: true, maxSockets: 1 });
  }

  get queued(): number {
    return this.queue.length;
  }

  add(span: QueuedSpan): void {
    if (this.queue.length >= QUEUE_LIMIT || this.closed) {
      this.counters.dropped(1);
      return;
    }
    if (this.queue.push(span) === 1) this.oldestAt = now();
    if (this.queue.length === 1 || this.queue.length === BATCH_SIZE) this.schedule();
  }

  /**
   * Sends every queued span (and any that arrive meanwhile), ignoring the
   * backoff; resolves when the queue is empty or after `withinMs` (null: no limit).
   */
  async flush(withinMs: number | null): Promise<void> {
    this.flushing = true;
    let timedOut = false;
    let timer: Timer | undefined;
    const timeout =
      withinMs === null
        ? null
        : new Promise<void>((resolve) => {
            timer = after(withinMs, () => {
              timedOut = true;
              resolve();
            });
          });
    try {
      while ((this.queue.length > 0 || this.inFlight !== null) && !this.closed && !timedOut) {
        if (this.inFlight === null) this.send();
        await (timeout === null ? this.inFlight : Promise.race([this.inFlight, timeout]));
      }
    } finally {
      cancel(timer);
      this.flushing = false;
    }
  }

  /**
   * After a reload switched collector or turned tracing off: sends what it
   * holds, then closes its connection. Requests still in flight may add
   * spans later; each such batch opens a connection and closes it again.
   */
  async retire(): Promise<void> {
    this.retired = true;
    await this.flush(null);
    this.closeIfIdle();
  }

  /** Stops: an export under way is cut, queued spans are dropped (counted). */
  close(): void {
    this.closed = true;
    this.clearTimer();
    this.request?.destroy();
    this.counters.dropped(this.queue.length);
    this.queue = [];
    this.agent.destroy();
  }

  /** Arms the timer for the next batch: now when a batch is full, else 5 s after the oldest span; not before the backoff ends. */
  private schedule(): void {
    if (this.inFlight !== null || this.queue.length === 0 || this.closed) return;
    const due = this.queue.length >= BATCH_SIZE ? 0 : this.oldestAt + BATCH_DELAY_MS;
    const at = Math.max(due, this.flushing ? 0 : this.retryAt);
    if (this.timer !== null) {
      if (this.timerAt <= at) return;
      this.clearTimer();
    }
    this.timerAt = at;
    // a full batch still leaves from a timer: never inside the request that filled it
    this.timer = after(Math.max(0, at - now()), this.onTimer);
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    this.send();
  };

  private clearTimer(): void {
    if (this.timer === null) return;
    cancel(this.timer);
    this.timer = null;
  }

  private send(): void {
    if (this.inFlight !== null || this.queue.length === 0 || this.closed) return;
    this.clearTimer();
    // what stays behind keeps the oldest's time: it is due as soon as this export ends
    const batch = this.queue.splice(0, BATCH_SIZE);
    const body = encodeTraces(batch, this.serviceName);
    this.inFlight = this.post(body).then((ok) => {
      this.inFlight = null;
      this.request = null;
      if (ok) {
        this.counters.exported(batch.length);
        this.backoffMs = 0;
        this.retryAt = 0;
      } else {
        this.counters.dropped(batch.length);
        this.backoffMs = Math.min(Math.max(this.backoffMs * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS);
        this.retryAt = now() + this.backoffMs;
      }
      this.schedule();
      this.closeIfIdle();
    });
  }

  private closeIfIdle(): void {
    if (this.retired && this.queue.length === 0 && this.inFlight === null) this.agent.destroy();
  }

  /** One POST; true when the collector answered 2xx within the timeout. */
  private post(body: Buffer): Promise<boolean> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = (ok: boolean): void => {
        if (settled) return;
        settled = true;
        cancel(timer);
        resolve(ok);
      };
      const req = (this.url.protocol === 'https:' ? https : http).request(this.url, {
        method: 'POST',
        agent: this.agent,
        headers: { ...this.otlp.headers, 'content-type': 'application/x-protobuf', 'content-length': body.length },
      });
      this.request = req;
      const timer = after(this.otlp.timeout, () => req.destroy());
      req.on('error', () => settle(false));
      req.on('close', () => settle(false));
      req.on('response', (res) => {
        const ok = res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300;
        res.on('error', () => settle(false));
        res.on('end', () => settle(ok));
        res.resume();
      });
      req.end(body);
    });
  }
}
