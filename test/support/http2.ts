// An HTTP/2 client for tests: one request over node:http2, its whole answer
// (status, headers, body, trailers) or how the stream ended.

import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';

export interface H2Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** trailing HEADERS, when some came */
  trailers: IncomingHttpHeaders | null;
  /** the RST_STREAM code when the stream was reset, else 0 */
  rstCode: number;
  /** the answer was its head alone, one HEADERS frame ending the stream (a gRPC trailers-only answer) */
  headersOnly: boolean;
}

export interface H2Options {
  method?: string;
  path?: string;
  headers?: OutgoingHttpHeaders;
  body?: string | Buffer;
  /** give up on the answer after this many ms */
  timeoutMs?: number;
}

/** A session to `origin` (http://... for h2c with prior knowledge, https://... with `ca`). */
export function h2Connect(origin: string, tls: { ca?: Buffer } = {}): ClientHttp2Session {
  const session = http2.connect(origin, tls.ca === undefined ? {} : { ca: tls.ca });
  session.on('error', () => {});
  return session;
}

/** One request on `session`; rejects when the stream fails before any answer. */
export function h2Request(session: ClientHttp2Session, opts: H2Options = {}): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const method = opts.method ?? 'GET';
    // CONNECT carries no :path
    const path = method === 'CONNECT' ? {} : { ':path': opts.path ?? '/' };
    const stream = session.request({ ':method': method, ...path, ...opts.headers });
    let headers: IncomingHttpHeaders | null = null;
    let trailers: IncomingHttpHeaders | null = null;
    let headersOnly = false;
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      stream.close();
      reject(new Error(`no complete answer within ${opts.timeoutMs ?? 5000} ms`));
    }, opts.timeoutMs ?? 5000);
    stream.on('response', (h, flags) => {
      headers = h;
      headersOnly = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('error', () => {});
    stream.on('close', () => {
      clearTimeout(timer);
      if (headers === null) return reject(new Error(`stream closed without an answer (RST_STREAM ${stream.rstCode})`));
      resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks), trailers, rstCode: stream.rstCode ?? 0, headersOnly });
    });
    stream.end(opts.body);
  });
}

/** One request on a session of its own, closed afterwards. */
export async function h2Once(origin: string, opts: H2Options = {}, tls: { ca?: Buffer } = {}): Promise<H2Answer> {
  const session = h2Connect(origin, tls);
  try {
    return await h2Request(session, opts);
  } finally {
    session.close();
  }
}
