// The HTTP/2 adapter: a stream of Node's http2 core API translated into the
// protocol-neutral Inbound and Downstream, then handed to the stages
// (proxy/handle.ts), as listener/http1.ts does for HTTP/1.x. Pseudo-headers
// become the method, target and authority; the upstream gets a Host.

import type { IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import { constants } from 'node:http2';
import type { Socket } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { after, cancel } from '../clock.js';
import { presentTrailers, type Downstream, type Trailers } from '../proxy/downstream.js';
import { Exchange, type ListenerContext } from '../proxy/exchange.js';
import { isGrpc } from '../proxy/grpc.js';
import { handle } from '../proxy/handle.js';
import type { HttpProtocol, Inbound } from '../proxy/inbound.js';

export function serveHttp2(
  ctx: ListenerContext,
  session: ServerHttp2Session,
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  rawHeaders: string[],
): void {
  // A client's RST_STREAM surfaces as an error (whatever its code), then a
  // close: the close ends the exchange.
  stream.on('error', ignore);
  // a connection already gone has no client left to answer, nor its address to log
  if (session.destroyed) return;
  const inbound = new Http2Inbound(session, stream, headers, rawHeaders);
  const answer = new Http2Answer(stream, headers.te === 'trailers', isGrpc(headers['content-type']));
  const ex = new Exchange(ctx, inbound, answer);
  answer.over = () => ex.finish();
  // A stream reset before it got here is over already: logged as the client
  // leaving, as an HTTP/1.1 request cut off by a reset is.
  if (stream.destroyed) return ex.finish();
  stream.once('close', () => ex.finish());
  const limit = ctx.listener.config.limits.requestTimeout;
  if (inbound.body !== null && limit > 0) boundRequestTime(ex, stream, limit);
  handle(ex);
}

/**
 * The listener's requestTimeout, per stream: its body must have arrived
 * within it (HTTP/1.1 bounds the same span per request, in Node's server).
 */
function boundRequestTime(ex: Exchange, stream: ServerHttp2Stream, limit: number): void {
  const timer = after(limit, () => ex.fail('request_timeout', 'DPE', true));
  const stop = (): void => cancel(timer);
  stream.once('end', stop);
  stream.once('close', stop);
}

function ignore(): void {}

const CUT = new Error('answer cut short');

class Http2Inbound implements Inbound {
  readonly protocol: HttpProtocol = 'HTTP/2';
  readonly method: string;
  readonly target: string;
  readonly authority: string | undefined;
  readonly rawHeaders: string[];
  readonly body: Readable | null;
  readonly socket: Socket;

  constructor(
    session: ServerHttp2Session,
    stream: ServerHttp2Stream,
    readonly headers: IncomingHttpHeaders,
    raw: string[],
  ) {
    this.method = headers[':method'] ?? '';
    this.target = headers[':path'] ?? '';
    this.authority = headers[':authority'] ?? headers.host;
    this.rawHeaders = regularFields(raw, this.authority);
    // undici destroys a request body it has sent, which on the stream itself
    // would reset it before the answer could go back: it reads a pipe.
    this.body = stream.endAfterHeaders ? null : stream.pipe(new PassThrough());
    this.socket = session.socket as Socket;
  }

  /** An HTTP/2 stream's unread body never holds up its connection. */
  get bodyReceived(): boolean {
    return true;
  }
}

/**
 * The header fields without pseudo-headers, the way an HTTP/1.1 upstream
 * expects them: a Host (from :authority) when the client sent none, and the
 * cookie fields HTTP/2 may split joined into one (RFC 9113 §8.2.3).
 */
function regularFields(raw: string[], authority: string | undefined): string[] {
  const out: string[] = [];
  let hasHost = false;
  let cookie = -1;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* : */) continue;
    if (name === 'host') hasHost = true;
    else if (name === 'cookie') {
      if (cookie !== -1) {
        out[cookie] += `; ${raw[i + 1]}`;
        continue;
      }
      cookie = out.length + 1;
    }
    out.push(name, raw[i + 1]!);
  }
  if (!hasHost && authority !== undefined) out.push('host', authority);
  return out;
}

class Http2Answer implements Downstream {
  status = 0;
  private trailers: Trailers | null = null;
  private ended = false;
  /** the answer is the last the client gets on this request (start's `close`) */
  private last = false;
  /** ends the exchange (its upstream try, its log line) */
  over: () => void = ignore;
  /**
   * The head of a gRPC trailers-only answer (grpc-status in it), held until
   * the end: gRPC clients read the call's status from a head only when that
   * HEADERS frame also ends the stream.
   */
  private held: string[] | null = null;

  /**
   * `wantsTrailers`: the client said it takes trailers (TE: trailers, as
   * every gRPC client does); `grpc`: a gRPC request, whose answer may be
   * trailers-only
   */
  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly wantsTrailers: boolean,
    private readonly grpc: boolean,
  ) {}

  /** Node counts a stream the client reset as finished: only one that closed without a reset code got everything */
  get complete(): boolean {
    return this.ended && this.stream.rstCode === constants.NGHTTP2_NO_ERROR;
  }

  get closed(): boolean {
    return this.stream.destroyed;
  }

  start(status: number, headers: string[], close: boolean): void {
    this.status = status;
    this.last = close;
    if (this.stream.destroyed) return;
    // Node takes the pairs as they are (names lowercased, repeated names kept); :status goes first
    headers.unshift(':status', String(status));
    if (this.grpc && hasField(headers, 'grpc-status')) this.held = headers;
    else this.respond(headers);
  }

  private respond(fields: string[]): void {
    const stream = this.stream;
    if (this.wantsTrailers) {
      stream.respond(fields, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers(presentTrailers(this.trailers) ?? {}));
    } else {
      stream.respond(fields);
    }
  }

  write(chunk: Buffer): boolean {
    this.release();
    return this.stream.write(chunk);
  }

  /** A held head followed by a body after all: it goes as any head. */
  private release(): void {
    if (this.held === null) return;
    this.respond(this.held);
    this.held = null;
  }

  onDrain(resume: () => void): void {
    this.stream.once('drain', resume);
  }

  end(body?: Buffer | string, trailers?: Trailers | null): void {
    if (this.stream.destroyed) return;
    this.ended = true;
    if (this.held !== null && (body === undefined || body.length === 0) && presentTrailers(trailers) === null) {
      this.stream.respond(this.held, { endStream: true });
      this.held = null;
    } else {
      this.release();
      this.trailers = trailers ?? null;
      this.stream.end(body);
    }
    // Where HTTP/1.1 would close the connection, a request body still coming
    // is refused on its own: RST_STREAM NO_ERROR, sent once the answer is
    // out, tells the client to stop sending (RFC 9113 §8.1). The exchange
    // ends first, so that its upstream try is cancelled, not cut short by
    // the body it reads ending early.
    if (this.last && !this.stream.readableEnded) {
      this.over();
      this.stream.close(constants.NGHTTP2_NO_ERROR);
    }
  }

  abort(): void {
    // close() would end the writable side first: the client would read
    // END_STREAM, a clean end, before the RST_STREAM. destroy() sends the
    // reset alone (INTERNAL_ERROR).
    if (!this.stream.destroyed) this.stream.destroy(CUT);
  }
}

/** Is there a field `name` (lowercase) among the pairs? */
function hasField(pairs: readonly string[], name: string): boolean {
  for (let i = 0; i < pairs.length; i += 2) if (pairs[i]!.toLowerCase() === name) return true;
  return false;
}
