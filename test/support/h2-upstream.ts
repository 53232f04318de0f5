// A node:http2 upstream on 127.0.0.1 port 0: h2c (prior knowledge), or h2
// over TLS when given a key and certificate. It records every stream and
// the session it came on, so tests can count connections and streams.

import http2, { type Http2Session, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';

export interface H2Seen {
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** 1 for the first session the upstream accepted, 2 for the next... */
  session: number;
  streamId: number;
}

/** Called once the request body was read to its end (not for a stream the client reset); `seen` is the request's record. */
export type H2Handler = (stream: ServerHttp2Stream, seen: H2Seen) => void;

export interface H2Upstream {
  readonly port: number;
  readonly seen: H2Seen[];
  /** sessions accepted so far */
  sessions(): number;
  /** streams open right now, and the most seen open at once on any one session */
  readonly streams: { open: number; maxPerSession: number };
  close(): Promise<void>;
}

export interface H2UpstreamOptions {
  /** serve h2 over TLS (ALPN h2 only) with this key and certificate */
  tls?: { key: Buffer; cert: Buffer };
  /** SETTINGS announced to each client */
  settings?: http2.Settings;
}

export function h2Ok(stream: ServerHttp2Stream): void {
  stream.respond({ ':status': 200, 'content-type': 'text/plain' });
  stream.end('ok');
}

export async function startH2Upstream(handler: H2Handler = h2Ok, opts: H2UpstreamOptions = {}): Promise<H2Upstream> {
  const server = opts.tls === undefined ? http2.createServer({ settings: opts.settings }) : http2.createSecureServer({ ...opts.tls, settings: opts.settings });
  const seen: H2Seen[] = [];
  const live = new Set<ServerHttp2Session>();
  const ids = new WeakMap<Http2Session, number>();
  const openPerSession = new Map<number, number>();
  const streams = { open: 0, maxPerSession: 0 };
  let sessions = 0;
  server.on('session', (session) => {
    ids.set(session, ++sessions);
    live.add(session);
    session.on('close', () => live.delete(session));
    session.on('error', () => undefined);
  });
  server.on('stream', (stream, headers) => {
    const session = ids.get(stream.session!)!;
    const open = (openPerSession.get(session) ?? 0) + 1;
    openPerSession.set(session, open);
    streams.open++;
    streams.maxPerSession = Math.max(streams.maxPerSession, open);
    stream.on('close', () => {
      streams.open--;
      openPerSession.set(session, openPerSession.get(session)! - 1);
    });
    stream.on('error', () => undefined);
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    // node:http2 ends the request body of a stream the client reset too,
    // telling it apart only by the 'aborted' that follows
    stream.on('end', () =>
      setImmediate(() => {
        if (stream.aborted) return;
        const record: H2Seen = { headers, body: Buffer.concat(chunks), session, streamId: stream.id! };
        seen.push(record);
        handler(stream, record);
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    sessions: () => sessions,
    streams,
    close: () => {
      for (const session of live) session.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
