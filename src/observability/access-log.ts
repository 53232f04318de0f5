import { pino } from 'pino';
import type { AccessLogConfig } from '../config/types.js';
import type { HttpProtocol } from '../proxy/inbound.js';
import { encodeJsonLine, jsonLineBound } from './json-line.js';
import { log } from './log.js';
import { isoTime } from './log-time.js';

/** One finished request (CONTRACT §9). `time` is the request start, epoch ms. */
export interface AccessLogEntry {
  time: number;
  requestId: string;
  traceId: string;
  /** the SERVER span's id; null when the request was not traced */
  spanId: string | null;
  clientIp: string;
  method: string;
  path: string;
  /** the client's HTTP version */
  protocol: HttpProtocol;
  status: number;
  /** the grpc-status the client got (headers or trailers); null when none was sent */
  grpcStatus: number | null;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  upstreamMs: number | null;
  listener: string;
  route: string | null;
  cluster: string | null;
  endpoint: string | null;
  attempts: number;
  flags: readonly string[];
}

export interface AccessLog {
  /** false for `format: off`: callers then skip building the entry at all */
  readonly enabled: boolean;
  write(e: AccessLogEntry): void;
  /** resolves once every line written so far has reached the destination */
  flush(): Promise<void>;
  /** flushes, then closes the destination (stdout and stderr stay open) */
  close(): Promise<void>;
}

// A stalled stdout pipe must not grow the sidecar's memory without bound:
// past this much queued output, lines are dropped.
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

type SonicBoom = ReturnType<typeof pino.destination>;

// Lines are handed to the destination in batches, as Envoy flushes its
// access log once a second: a write per event-loop turn cost a write call
// (and a syscall in the thread pool) per handful of requests, about a tenth
// of tandem's CPU per request in the small-GET profile. A crash loses at
// most one interval of lines; a full batch goes at once.
const FLUSH_INTERVAL_MS = 250;
const BATCH_BYTES = 64 * 1024;

/**
 * Lines encoded into a batch buffer as they are written, handed to `put` a
 * batch at a time. Each line is encoded into the batch without a string of
 * its own: a batch kept as a string held a few hundred lines (ropes of
 * template pieces) across scavenges. Every buffer handed over is the
 * batcher's own and never touched again, so a worker thread can transfer it.
 */
abstract class Batcher {
  protected open = true;
  protected failed = false;
  protected pending = false;
  private batch = Buffer.allocUnsafeSlow(BATCH_BYTES);
  private used = 0;
  private timer: NodeJS.Timeout | null = null;

  protected abstract put(bytes: Buffer): void;

  /** A line of the text format. */
  writeText(line: string): void {
    if (!this.open) return;
    // UTF-8 takes at most 3 bytes per UTF-16 unit
    if (this.reserve(line.length * 3)) this.used += this.batch.write(line, this.used);
    else this.put(Buffer.from(line));
  }

  /** The JSON line of `e`. */
  writeJson(e: AccessLogEntry): void {
    if (!this.open) return;
    const bound = jsonLineBound(e);
    if (this.reserve(bound)) {
      this.used = encodeJsonLine(e, this.batch, this.used);
    } else {
      const own = Buffer.allocUnsafeSlow(bound);
      this.put(own.subarray(0, encodeJsonLine(e, own, 0)));
    }
  }

  /** Room for a line of up to `bound` bytes in the batch (handing over a fuller one first); false when the line must go on its own. */
  private reserve(bound: number): boolean {
    this.pending = true;
    if (bound > BATCH_BYTES - this.used) this.handOver();
    if (bound > BATCH_BYTES) return false;
    if (this.used === 0) this.timer = setTimeout(this.handOver, FLUSH_INTERVAL_MS).unref();
    return true;
  }

  protected readonly handOver = (): void => {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.used === 0 || this.failed) return;
    const full = this.batch.subarray(0, this.used);
    this.batch = Buffer.allocUnsafeSlow(BATCH_BYTES);
    this.used = 0;
    this.put(full);
  };

  protected get batchEmpty(): boolean {
    return this.used === 0;
  }

  protected dropBatch(): void {
    this.used = 0;
  }
}

/**
 * A non-blocking destination whose flush really waits: SonicBoom's own
 * flush(cb) returns at once when minLength is 0, so completion is tracked
 * here through its 'drain' event, which fires each time its queue empties.
 */
class Sink extends Batcher {
  private readonly boom: SonicBoom;
  private waiters: Array<() => void> = [];
  private closing: Promise<void> | undefined;

  constructor(private readonly path: string) {
    super();
    const dest = path === 'stdout' ? 1 : path === 'stderr' ? 2 : path;
    this.boom = pino.destination({ dest, sync: false, mkdir: true, maxLength: MAX_QUEUED_BYTES, contentMode: 'buffer' });
    // A drain with a batch still waiting for its turn is not the end.
    this.boom.on('drain', () => {
      if (this.batchEmpty) this.settle();
    });
    this.boom.on('error', (err: Error) => this.fail(err));
  }

  /** SonicBoom in buffer mode takes Buffers, though its types say string. */
  protected put(bytes: Buffer): void {
    this.boom.write(bytes as unknown as string);
  }

  /** Whole lines encoded elsewhere (a worker thread's batch), written as they are. */
  writeLines(bytes: Buffer): void {
    if (!this.open) return;
    this.handOver();
    this.pending = true;
    this.put(bytes);
  }

  flush(): Promise<void> {
    if (!this.pending) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    this.handOver();
    return done;
  }

  close(): Promise<void> {
    this.open = false;
    this.closing ??= this.end();
    return this.closing;
  }

  private async end(): Promise<void> {
    await this.flush();
    if (this.failed) return;
    // A file still opening cannot be ended, and pino's exit hook would throw
    // on it: a tandem that fails to start closes its log right away.
    if ((this.boom as unknown as { fd: number }).fd < 0) await new Promise<void>((resolve) => {
      this.boom.once('ready', resolve);
      this.boom.once('error', () => resolve());
    });
    if (this.failed) return;
    const closed = new Promise<void>((resolve) => {
      this.boom.once('close', resolve);
      this.boom.once('error', () => resolve());
    });
    this.boom.end();
    await closed;
  }

  private settle(): void {
    this.pending = false;
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  // Logging must never take the proxy down: report the first failure and
  // drop lines from then on (SonicBoom would otherwise queue them forever).
  private fail(err: Error): void {
    if (!this.failed) log.error({ path: this.path, error: err.message }, 'access log failed; dropping access log lines');
    this.failed = true;
    this.open = false;
    this.dropBatch();
    // pino flushes a non-blocking destination synchronously at process exit,
    // which throws from the exit handler for one that never opened. Nothing
    // is left to flush: make it a no-op, as pino itself does after EPIPE.
    this.boom.flushSync = noop;
    this.settle();
  }
}

/**
 * A worker thread's batches, handed to the thread that owns the
 * destination (docs/workers.md): whole lines a batch at a time, so the lines
 * of several workers never interleave within one another.
 */
class Relay extends Batcher {
  constructor(private readonly post: (bytes: Buffer) => void) {
    super();
  }

  protected put(bytes: Buffer): void {
    this.post(bytes);
  }

  /** The batch is handed over; the owner writes it before it answers anything asked after this. */
  flush(): Promise<void> {
    this.handOver();
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.handOver();
    this.open = false;
    return Promise.resolve();
  }
}

function noop(): void {}

// Characters that would let a request target break out of its quotes or line.
const UNSAFE_IN_QUOTES = /["\\\u0000-\u001f\u007f]/;

function quotable(s: string): string {
  return UNSAFE_IN_QUOTES.test(s) ? JSON.stringify(s).slice(1, -1) : s;
}

/**
 * The text format, one line per request, `-` for a missing value (a
 * request Node refused before parsing its head has no method or path):
 *
 *   CLIENTIP - - [TIME] "METHOD PATH PROTOCOL" STATUS BYTESOUT DURATIONms route=R cluster=C endpoint=E attempts=N flags=F grpc=G rid=REQUESTID span=SPANID
 *
 * TIME is ISO-8601 UTC (the request start), PATH the target as received with
 * quotes, backslashes and control characters escaped as in JSON, F the
 * comma-separated flags (`UF,URX`) or `-`, G the grpc-status or `-`.
 */
export function formatText(e: AccessLogEntry): string {
  return (
    `${e.clientIp} - - [${isoTime(e.time)}] "${e.method || '-'} ${e.path === '' ? '-' : quotable(e.path)} ${e.protocol}" ` +
    `${e.status} ${e.bytesOut} ${e.durationMs}ms route=${e.route ?? '-'} cluster=${e.cluster ?? '-'} ` +
    `endpoint=${e.endpoint ?? '-'} attempts=${e.attempts} flags=${e.flags.length > 0 ? e.flags.join(',') : '-'} ` +
    `grpc=${e.grpcStatus ?? '-'} rid=${e.requestId} span=${e.spanId ?? '-'}\n`
  );
}

/** The main thread's access log; `writeLines` takes the batches workers relay to it. */
export interface OwnedAccessLog extends AccessLog {
  writeLines(bytes: Buffer): void;
}

function accessLogOver(cfg: AccessLogConfig, sink: Sink | Relay): AccessLog {
  const write = cfg.format === 'json' ? (e: AccessLogEntry): void => sink.writeJson(e) : (e: AccessLogEntry): void => sink.writeText(formatText(e));
  return { enabled: true, write, flush: () => sink.flush(), close: () => sink.close() };
}

const OFF: OwnedAccessLog = { enabled: false, write() {}, writeLines() {}, flush: async () => {}, close: async () => {} };

export function createAccessLog(cfg: AccessLogConfig): OwnedAccessLog {
  if (cfg.format === 'off') return OFF;
  const sink = new Sink(cfg.path);
  return { ...accessLogOver(cfg, sink), writeLines: (bytes) => sink.writeLines(bytes) };
}

/** A worker thread's access log: its batches go to `put`, which hands them to the main thread's. */
export function relayAccessLog(cfg: AccessLogConfig, put: (bytes: Buffer) => void): AccessLog {
  return cfg.format === 'off' ? OFF : accessLogOver(cfg, new Relay(put));
}
