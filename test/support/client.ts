// A protocol-neutral client for the behaviour tests: the same request over
// HTTP/1.1 (undici, as the tests always used) or h2c with prior knowledge
// (node:http2, one session per origin and test), answered in undici's shape
// so one assertion reads either.

import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import net from 'node:net';
import { request as undiciRequest } from 'undici';
import { parseResponses, type Cleanup } from './harness.js';

export type Protocol = 'http1' | 'h2c';

/** Every protocol a behaviour test runs over: `describe.each(PROTOCOLS)`. */
export const PROTOCOLS: readonly Protocol[] = ['http1', 'h2c'];

export type Headers = Record<string, string | string[] | undefined>;

export interface RequestOptions {
  method?: string;
  /** a `host` here becomes `:authority` on HTTP/2, unless `:authority` is given too */
  headers?: Headers;
  body?: string | Buffer;
}

export interface AnswerBody {
  /** the whole body; rejects when the stream or connection broke before its end */
  text(): Promise<string>;
}

export interface Answer {
  statusCode: number;
  /** lowercase names, no pseudo-headers */
  headers: Headers;
  body: AnswerBody;
  /** trailing fields, known once the body was read; empty when none came */
  trailers: Headers;
}

export interface Client {
  readonly protocol: Protocol;
  /** resolves with the head; rejects when no answer came (reset, connection closed) */
  request(url: string, opts?: RequestOptions): Promise<Answer>;
  /**
   * Starts a request whose body the test writes piece by piece (and may
   * leave unfinished): a raw socket on HTTP/1.1, a stream on HTTP/2.
   */
  open(url: string, opts: OpenOptions): Exchange;
}

export interface H2cClient extends Client {
  /**
   * Resolves true when the session of the last request to `url`'s origin
   * got GOAWAY or closed within `ms`: how tandem ends an HTTP/2 connection
   * where it would close an HTTP/1.1 one.
   */
  connectionClosed(url: string, ms?: number): Promise<boolean>;
}

export interface OpenOptions {
  method: string;
  /** a number goes as content-length; 'unknown' streams the body (chunked on HTTP/1.1); absent: no body */
  bodyLength?: number | 'unknown';
}

export interface Exchange {
  write(chunk: string): void;
  /** the body is complete */
  end(): void;
  /** answer bytes received so far (head and body on HTTP/1.1, body on HTTP/2) */
  received(): number;
  /** the client leaves: its socket reset on HTTP/1.1, RST_STREAM (CANCEL) on HTTP/2 */
  leave(): void;
  /** the answer's status and body once the server ended it */
  answer(): Promise<{ status: number; body: string }>;
}

/** A client for `protocol` whose connections the test's cleanup closes. */
export function clientFor(protocol: Protocol, cleanup: Cleanup): Client {
  return protocol === 'http1' ? http1Client() : h2cClient(cleanup);
}

function http1Client(): Client {
  return {
    protocol: 'http1',
    request: async (url, opts = {}) => {
      const res = await undiciRequest(url, { method: (opts.method ?? 'GET') as 'GET', headers: opts.headers, body: opts.body });
      return { statusCode: res.statusCode, headers: res.headers, body: res.body, trailers: res.trailers };
    },
    open: http1Open,
  };
}

function http1Open(url: string, opts: OpenOptions): Exchange {
  const u = new URL(url);
  const socket = net.connect(Number(u.port), u.hostname);
  socket.on('error', () => undefined);
  const chunks: Buffer[] = [];
  let got = 0;
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    got += c.length;
  });
  const closed = new Promise((resolve) => socket.once('close', resolve));
  const chunked = opts.bodyLength === 'unknown';
  const framing = chunked ? 'Transfer-Encoding: chunked\r\n' : opts.bodyLength === undefined ? '' : `Content-Length: ${opts.bodyLength}\r\n`;
  socket.write(`${opts.method} ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n${framing}Connection: close\r\n\r\n`);
  return {
    write: (chunk) => void socket.write(chunked ? `${Buffer.byteLength(chunk).toString(16)}\r\n${chunk}\r\n` : chunk),
    end: () => {
      if (chunked) socket.write('0\r\n\r\n');
    },
    received: () => got,
    leave: () => void socket.resetAndDestroy(),
    answer: async () => {
      await closed;
      const [res] = parseResponses(Buffer.concat(chunks).toString('latin1'));
      if (res === undefined) throw new Error('connection closed without an answer');
      return { status: res.status, body: res.body };
    },
  };
}

/** An h2c client (prior knowledge) whose sessions the test's cleanup closes. */
export function h2cClient(cleanup: Cleanup): H2cClient {
  const sessions = new Map<string, ClientHttp2Session>();
  let registered = false;
  const sessionFor = (origin: string): ClientHttp2Session => {
    const open = sessions.get(origin);
    if (open !== undefined && !open.closed && !open.destroyed) return open;
    const session = http2.connect(origin);
    session.on('error', () => undefined);
    sessions.set(origin, session);
    if (!registered) {
      registered = true;
      cleanup.add({
        close: () => {
          for (const s of sessions.values()) s.destroy();
          sessions.clear();
          registered = false;
        },
      });
    }
    return session;
  };
  return {
    protocol: 'h2c',
    request: (url, opts = {}) => {
      const u = new URL(url);
      return h2Exchange(sessionFor(u.origin), `${u.pathname}${u.search}`, opts);
    },
    open: (url, opts) => {
      const u = new URL(url);
      return h2Open(sessionFor(u.origin), `${u.pathname}${u.search}`, opts);
    },
    connectionClosed: (url, ms = 2000) => {
      const session = sessions.get(new URL(url).origin);
      if (session === undefined) throw new Error(`connectionClosed: no session to ${url}`);
      return goneWithin(session, ms);
    },
  };
}

function goneWithin(session: ClientHttp2Session, ms: number): Promise<boolean> {
  if (session.closed || session.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (gone: boolean): void => {
      clearTimeout(timer);
      session.off('goaway', onGone);
      session.off('close', onGone);
      resolve(gone);
    };
    const onGone = (): void => done(true);
    const timer = setTimeout(() => done(false), ms);
    session.once('goaway', onGone);
    session.once('close', onGone);
  });
}

function h2Exchange(session: ClientHttp2Session, path: string, opts: RequestOptions): Promise<Answer> {
  const fields: OutgoingHttpHeaders = { ':method': opts.method ?? 'GET', ':path': path };
  const authority = opts.headers?.[':authority'] !== undefined;
  for (const [name, value] of Object.entries(opts.headers ?? {})) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    fields[lower === 'host' && !authority ? ':authority' : lower] = value;
  }
  // as undici on HTTP/1.1 (and curl on either), a body known in advance goes with its length
  if (opts.body !== undefined && fields['content-length'] === undefined) fields['content-length'] = Buffer.byteLength(opts.body);
  return new Promise((resolve, reject) => {
    const stream = session.request(fields);
    const chunks: Buffer[] = [];
    const trailers: Headers = {};
    let broken: Error | null = null;
    let ended = false;
    const readers: (() => void)[] = [];
    const settle = (): void => {
      for (const r of readers.splice(0)) r();
    };
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('trailers', (t: IncomingHttpHeaders) => Object.assign(trailers, t));
    stream.on('error', (err: Error) => (broken ??= err));
    stream.on('end', () => (ended = true));
    stream.on('close', () => {
      if (!ended || stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
        broken ??= new Error(`stream reset (RST_STREAM ${stream.rstCode})`);
      }
      reject(broken);
      settle();
    });
    stream.on('response', (head: IncomingHttpHeaders) => {
      const text = (): Promise<string> =>
        new Promise((res, rej) => {
          const done = (): void => (broken !== null && !ended ? rej(broken) : res(Buffer.concat(chunks).toString()));
          if (stream.closed) done();
          else readers.push(done);
        });
      resolve({
        statusCode: Number(head[':status']),
        headers: withoutPseudo(head),
        body: { text },
        trailers,
      });
    });
    stream.end(opts.body);
  });
}

function h2Open(session: ClientHttp2Session, path: string, opts: OpenOptions): Exchange {
  const fields: OutgoingHttpHeaders = { ':method': opts.method, ':path': path };
  if (typeof opts.bodyLength === 'number') fields['content-length'] = opts.bodyLength;
  const stream = session.request(fields, { endStream: opts.bodyLength === undefined });
  stream.on('error', () => undefined);
  let status = 0;
  const chunks: Buffer[] = [];
  let got = 0;
  stream.on('response', (head: IncomingHttpHeaders) => (status = Number(head[':status'])));
  stream.on('data', (c: Buffer) => {
    chunks.push(c);
    got += c.length;
  });
  const closed = new Promise((resolve) => stream.once('close', resolve));
  return {
    write: (chunk) => void stream.write(chunk),
    end: () => void stream.end(),
    received: () => got,
    leave: () => stream.close(http2.constants.NGHTTP2_CANCEL),
    answer: async () => {
      await closed;
      if (status === 0) throw new Error(`stream closed without an answer (RST_STREAM ${stream.rstCode})`);
      return { status, body: Buffer.concat(chunks).toString() };
    },
  };
}

function withoutPseudo(head: IncomingHttpHeaders): Headers {
  const out: Headers = {};
  for (const [name, value] of Object.entries(head)) if (!name.startsWith(':')) out[name] = value;
  return out;
}
