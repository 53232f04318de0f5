// A listener's HTTP/2 side: a node:http2 server that never listens itself.
// The listener's own server accepts every connection and hands those that
// speak HTTP/2 over (protocol-switch.ts); their streams go to the HTTP/2
// adapter (http2.ts). Keeps the sessions for the drain.

import http2, { type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { ListenerConfig } from '../config/types.js';
import type { ListenerContext } from '../proxy/exchange.js';
import { serveHttp2 } from './http2.js';

export class Http2Front {
  private readonly server: Http2Server;
  private readonly sessions = new Set<ServerHttp2Session>();

  constructor(ctx: ListenerContext) {
    const config = ctx.listener.config;
    this.server = http2.createServer(http2ServerOptions(config));
    this.server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw: string[]) =>
      serveHttp2(ctx, stream, headers, raw),
    );
    this.server.on('session', (session: ServerHttp2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
      // a connection that arrives while the listener drains takes no stream
      if (ctx.drain.draining) session.close();
    });
    // A connection without a frame for the listener's idleTimeout is told to
    // go away; its streams still in flight finish.
    this.server.setTimeout(config.limits.idleTimeout);
    this.server.on('timeout', (session: ServerHttp2Session) => session.close());
    this.server.on('sessionError', () => {});
  }

  /** Takes over a connection whose client speaks HTTP/2 (its bytes read so far pushed back onto it). */
  accept(socket: Socket): void {
    this.server.emit('connection', socket);
  }

  /** Drain: every client gets GOAWAY; streams in flight go on. */
  goAway(): void {
    for (const s of this.sessions) s.close();
  }

  destroyAll(): void {
    for (const s of this.sessions) s.destroy();
  }
}

/** Node's HTTP/2 server settings from the listener's limits. */
function http2ServerOptions(config: ListenerConfig): http2.ServerOptions {
  const { limits, http2: h2 } = config;
  return {
    settings: { maxConcurrentStreams: h2.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
    // One more field than the limit, pseudo-headers included, so the stages answer 431 as on HTTP/1.1.
    maxHeaderListPairs: limits.maxHeaders + 5,
  };
}
