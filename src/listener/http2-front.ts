// A listener's HTTP/2 side: a node:http2 server that never listens itself.
// The listener's own server accepts every connection and hands those that
// speak HTTP/2 over (protocol-switch.ts); their streams go to the HTTP/2
// adapter (http2.ts). Keeps the sessions for the drain, and ends those whose
// client abuses HTTP/2 (h2-guard.ts).

import http2, { type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { log } from '../observability/log.js';
import type { ListenerContext } from '../proxy/exchange.js';
import { H2AbuseError, guardSession, http2ServerOptions } from './h2-guard.js';
import { serveHttp2 } from './http2.js';

export class Http2Front {
  private readonly server: Http2Server;
  private readonly sessions = new Set<ServerHttp2Session>();
  private goingAway = false;

  constructor(ctx: ListenerContext) {
    const config = ctx.listener.config;
    this.server = http2.createServer(http2ServerOptions(config));
    this.server.on('session', (session: ServerHttp2Session) => {
      guardSession(session);
      this.sessions.add(session);
      // from the session, not the stream: a stream the client reset before
      // this event has let go of its session (and so of the client's address)
      session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw: string[]) =>
        serveHttp2(ctx, session, stream, headers, raw),
      );
      session.once('close', () => this.sessions.delete(session));
      // a connection handed over after the GOAWAYs went out takes no stream;
      // during drain.delay new connections are served, as on HTTP/1.1
      if (this.goingAway) session.close();
    });
    // A connection without a frame for the listener's idleTimeout is told to
    // go away; its streams still in flight finish.
    this.server.setTimeout(config.limits.idleTimeout);
    this.server.on('timeout', (session: ServerHttp2Session) => session.close());
    this.server.on('sessionError', (err: Error) => {
      if (err instanceof H2AbuseError) log.warn({ listener: config.name, client: err.client, abuse: err.abuse }, 'HTTP/2 connection ended: GOAWAY ENHANCE_YOUR_CALM');
    });
  }

  /** Takes over a connection whose client speaks HTTP/2 (its bytes read so far pushed back onto it). */
  accept(socket: Socket): void {
    this.server.emit('connection', socket);
  }

  /** Drain: every client gets GOAWAY; streams in flight go on. */
  goAway(): void {
    this.goingAway = true;
    for (const s of this.sessions) s.close();
  }

  destroyAll(): void {
    for (const s of this.sessions) s.destroy();
  }
}
