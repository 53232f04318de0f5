// A raw HTTP/2 client over a real socket, for the frames no client library
// sends on purpose (a reset right after each request, a header block that
// never ends, a flood of SETTINGS or PING). It writes frames as told and
// reads every frame the server sends back; HPACK is as small as that needs:
// header lists go out as literals (never indexed, no Huffman), and of an
// answer only a leading `:status` is decoded.

import net from 'node:net';
// node:timers' own functions: waits keep real time when a test fakes the global clock
import { clearTimeout, setTimeout } from 'node:timers';
import tls from 'node:tls';

export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PRIORITY: 0x20 } as const;

/** RFC 9113 section 7 */
export const ERROR = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

/** RFC 9113 section 6.5.2 */
export const SETTING = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export interface GoAway {
  lastStreamId: number;
  errorCode: number;
}

/** What came back on one stream: its answer's status, or the code it was reset with. */
export type StreamAnswer = { status: number | undefined } | { reset: number };

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const FRAME_HEAD = 9;

/** One frame's bytes. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(FRAME_HEAD);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an N-bit prefix, `high` holding the bits above it (RFC 7541 section 5.1). */
function hpackInteger(value: number, prefixBits: number, high: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([high | value]);
  const bytes = [high | max];
  let rest = value - max;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

function hpackString(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  return Buffer.concat([hpackInteger(bytes.length, 7, 0), bytes]);
}

/** A header block of literal fields without indexing and with a new name (RFC 7541 section 6.2.2). */
export function headerBlock(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  return Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0x00]), hpackString(name), hpackString(value)]));
}

/** A GET's header fields for `path`, then `extra`. */
export function getRequest(path = '/', extra: ReadonlyArray<readonly [string, string]> = []): Array<readonly [string, string]> {
  return [[':method', 'GET'], [':scheme', 'http'], [':authority', 'app'], [':path', path], ...extra];
}

// The static table's :status entries (RFC 7541 appendix A): an answer with
// one of these statuses names it with one byte.
const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

/**
 * Digits in HPACK's Huffman code (RFC 7541 appendix B): 0-2 in five bits
 * (0-2), 3-9 in six (25-31); the padding is ones, shorter than a code.
 */
function huffmanDigits(bytes: Buffer): string {
  let bits = 0;
  let count = 0;
  let out = '';
  for (const byte of bytes) {
    bits = (bits << 8) | byte;
    count += 8;
    for (;;) {
      if (count >= 5 && bits >>> (count - 5) < 3) {
        out += String(bits >>> (count - 5));
        count -= 5;
      } else if (count >= 6) {
        out += String((bits >>> (count - 6)) - 22);
        count -= 6;
      } else break;
      bits &= (1 << count) - 1;
    }
  }
  return out;
}

/**
 * The `:status` of a response header block when its first field gives it:
 * from the static table, or as a literal whose name is from the table;
 * undefined otherwise. The client allows the server no dynamic table, so
 * a status is never a reference into one.
 */
export function statusOfBlock(whole: Buffer): number | undefined {
  // skip dynamic table size updates (001xxxxx): the server's answer to our table size of 0
  let start = 0;
  while (((whole[start] ?? 0) & 0xe0) === 0x20) start++;
  const block = whole.subarray(start);
  const first = block[0];
  if (first === undefined) return undefined;
  if (first & 0x80) return STATIC_STATUS[first & 0x7f];
  // literal with incremental indexing (01xxxxxx) or without (0000xxxx, 0001xxxx), name from the table
  const nameIndex = first & 0x40 ? first & 0x3f : first & 0x0f;
  if (STATIC_STATUS[nameIndex] === undefined) return undefined;
  const lengthByte = block[1] ?? 0;
  const value = block.subarray(2, 2 + (lengthByte & 0x7f));
  return Number(lengthByte & 0x80 ? huffmanDigits(value) : value.toString('latin1'));
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

export interface RawH2Options {
  /** speak TLS and offer `h2` by ALPN; certificates are not verified */
  tls?: boolean;
  /** how long `connect` waits for the socket, ms */
  connectMs?: number;
}

/**
 * A connection that writes the frames it is told to and records each frame
 * the server sends. Waits are bounded: they resolve with undefined (or
 * false) when their time is up.
 */
export class RawH2Client {
  readonly frames: Frame[] = [];
  closed = false;
  private buffered: Buffer = Buffer.alloc(0);
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly socket: net.Socket) {
    // each frame goes out when written, never held back for the previous one's ACK
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** Connects to 127.0.0.1:`port` and writes the preface and a SETTINGS frame that allows the server no HPACK dynamic table. */
  static connect(port: number, opts: RawH2Options = {}): Promise<RawH2Client> {
    return new Promise((resolve, reject) => {
      const socket = opts.tls
        ? tls.connect({ port, host: '127.0.0.1', ALPNProtocols: ['h2'], rejectUnauthorized: false })
        : net.connect(port, '127.0.0.1');
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection to port ${port}`));
      }, opts.connectMs ?? 2000);
      socket.once(opts.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.off('error', reject);
        const client = new RawH2Client(socket);
        client.write(PREFACE);
        client.settings([[SETTING.HEADER_TABLE_SIZE, 0]]);
        resolve(client);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** Writes bytes as they are; false when the socket is gone. */
  write(...chunks: Buffer[]): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    this.socket.write(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    return true;
  }

  send(type: number, flags: number, streamId: number, payload?: Buffer): boolean {
    return this.write(frame(type, flags, streamId, payload));
  }

  settings(values: ReadonlyArray<readonly [number, number]> = []): boolean {
    const payload = Buffer.alloc(values.length * 6);
    values.forEach(([id, value], i) => {
      payload.writeUInt16BE(id, i * 6);
      payload.writeUInt32BE(value, i * 6 + 2);
    });
    return this.send(FRAME.SETTINGS, 0, 0, payload);
  }

  settingsAck(): boolean {
    return this.send(FRAME.SETTINGS, FLAG.ACK, 0);
  }

  /** A HEADERS frame; with `endHeaders: false` the block goes on in CONTINUATION frames. */
  headers(streamId: number, block: Buffer, opts: { endStream?: boolean; endHeaders?: boolean } = {}): boolean {
    const flags = (opts.endStream ?? true ? FLAG.END_STREAM : 0) | (opts.endHeaders ?? true ? FLAG.END_HEADERS : 0);
    return this.send(FRAME.HEADERS, flags, streamId, block);
  }

  continuation(streamId: number, block: Buffer, endHeaders = false): boolean {
    return this.send(FRAME.CONTINUATION, endHeaders ? FLAG.END_HEADERS : 0, streamId, block);
  }

  /** A whole request in one HEADERS frame. */
  request(streamId: number, fields = getRequest(), endStream = true): boolean {
    return this.headers(streamId, headerBlock(fields), { endStream });
  }

  data(streamId: number, body: Buffer, endStream = true): boolean {
    return this.send(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, streamId, body);
  }

  rstStream(streamId: number, errorCode: number = ERROR.CANCEL): boolean {
    return this.send(FRAME.RST_STREAM, 0, streamId, u32(errorCode));
  }

  ping(opaque: Buffer = Buffer.alloc(8), ack = false): boolean {
    return this.send(FRAME.PING, ack ? FLAG.ACK : 0, 0, opaque);
  }

  windowUpdate(streamId: number, increment: number): boolean {
    return this.send(FRAME.WINDOW_UPDATE, 0, streamId, u32(increment));
  }

  priority(streamId: number, dependsOn: number, weight = 16): boolean {
    return this.send(FRAME.PRIORITY, 0, streamId, Buffer.concat([u32(dependsOn), Buffer.from([weight - 1])]));
  }

  /** The first frame received (so far or within `ms`) that `match` accepts. */
  async waitFor(match: (f: Frame) => boolean, ms = 2000): Promise<Frame | undefined> {
    const found = (): Frame | undefined => this.frames.find(match);
    await this.until(() => found() !== undefined || this.closed, ms);
    return found();
  }

  /** The server's GOAWAY, if one comes within `ms`. */
  async goaway(ms = 2000): Promise<GoAway | undefined> {
    const f = await this.waitFor((x) => x.type === FRAME.GOAWAY, ms);
    if (f === undefined) return undefined;
    return { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, errorCode: f.payload.readUInt32BE(4) };
  }

  /** The answer on `streamId`: the status of its HEADERS, or its RST_STREAM's code; undefined if neither came within `ms`. */
  async answer(streamId: number, ms = 2000): Promise<StreamAnswer | undefined> {
    const f = await this.waitFor((x) => x.streamId === streamId && (x.type === FRAME.HEADERS || x.type === FRAME.RST_STREAM), ms);
    if (f === undefined) return undefined;
    if (f.type === FRAME.RST_STREAM) return { reset: f.payload.readUInt32BE(0) };
    return { status: statusOfBlock(f.payload) };
  }

  /** True once the server has closed the connection (within `ms`). */
  untilClosed(ms = 2000): Promise<boolean> {
    return this.until(() => this.closed, ms);
  }

  /** Frames of `type` received so far. */
  count(type: number): number {
    return this.frames.filter((f) => f.type === type).length;
  }

  close(): void {
    this.socket.destroy();
  }

  private until(done: () => boolean, ms: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (!done()) return;
        finish(true);
      };
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(ok);
      };
      const timer = setTimeout(() => finish(done()), ms);
      this.waiters.add(check);
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private read(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= FRAME_HEAD) {
      const length = this.buffered.readUIntBE(0, 3);
      if (this.buffered.length < FRAME_HEAD + length) break;
      this.frames.push({
        type: this.buffered[3]!,
        flags: this.buffered[4]!,
        streamId: this.buffered.readUInt32BE(5) & 0x7fffffff,
        payload: this.buffered.subarray(FRAME_HEAD, FRAME_HEAD + length),
      });
      this.buffered = this.buffered.subarray(FRAME_HEAD + length);
    }
    this.wake();
  }
}
