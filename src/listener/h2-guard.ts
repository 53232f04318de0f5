// HTTP/2 abuse a client connection is ended for, beyond what Node's http2
// server bounds by itself: rapid reset (streams opened then reset or
// refused, over and over), SETTINGS floods and PING floods end the
// connection with GOAWAY ENHANCE_YOUR_CALM; other connections never notice.
// Oversized header lists and CONTINUATION floods are Node's (nghttp2's)
// to refuse, from the server options below. docs/security.md tells which
// bound answers what.

import http2, { type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { ListenerConfig } from '../config/types.js';
import { now } from '../clock.js';

export interface AbuseLimits {
  /** events of one kind a connection may cause within `windowMs` (1 or more); one more ends it */
  events: number;
  windowMs: number;
}

export const ABUSE_LIMITS: AbuseLimits = { events: 100, windowMs: 10_000 };

export type Abuse = 'rapid_reset' | 'settings_flood' | 'ping_flood';

/** What a session is destroyed with: its server emits it as 'sessionError'. */
export class H2AbuseError extends Error {
  constructor(
    readonly abuse: Abuse,
    /** the client's address, read while its socket was still there */
    readonly client: string | undefined,
  ) {
    super(`HTTP/2 connection ended for abuse: ${abuse}`);
  }
}

// Every request carries four pseudo-header fields (:method, :scheme,
// :authority, :path) that Node counts as pairs; maxHeaders counts the others.
const PSEUDO_HEADERS = 4;

// Node ends a connection with INTERNAL_ERROR after this many new streams
// it had to reject in a row: it rejects those opened while the streams reset
// just before are not yet freed, so a burst of resets in one read reaches its
// default (100) before the guard, which counts at the end of the read, gets
// its turn. Raised to nghttp2's own bound on a burst of resets (1000 by
// default, also ending with INTERNAL_ERROR), which stays the backstop.
const REJECTED_STREAMS_IN_A_ROW = 1000;

/**
 * The options of a listener's http2 server: the listener's limits as the
 * SETTINGS each client is told (and nghttp2 enforces), and Node's
 * per-session bounds. A header list past `maxHeaderBytes` (counted as
 * HTTP/2 does: name, value and 32 bytes per field) has its stream reset;
 * one field more than `maxHeaders` still reaches the stages, which answer
 * 431 as on HTTP/1.1, and more than that has its stream reset. Either way
 * the connection goes on.
 */
export function http2ServerOptions(config: ListenerConfig): http2.ServerOptions {
  const { limits, http2: h2 } = config;
  return {
    settings: { maxConcurrentStreams: h2.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
    maxHeaderListPairs: PSEUDO_HEADERS + limits.maxHeaders + 1,
    maxSessionRejectedStreams: REJECTED_STREAMS_IN_A_ROW,
  };
}

/**
 * More than `events` within `windowMs`, exactly: the times of the last
 * `events` events in a ring, allocated on the first one.
 */
class SlidingCount {
  private times: Float64Array | undefined;
  private next = 0;
  private seen = 0;

  constructor(private readonly limits: AbuseLimits) {}

  /** Records `n` events at `t`: true once one of them is past the limit (at most events + 1 steps). */
  add(t: number, n = 1): boolean {
    const { events, windowMs } = this.limits;
    this.times ??= new Float64Array(events);
    for (let i = 0; i < n; i++) {
      if (this.seen >= events && t - this.times[this.next]! < windowMs) return true;
      this.times[this.next] = t;
      this.next = (this.next + 1) % this.times.length;
      this.seen++;
    }
    return false;
  }
}

/** How many streams a client has opened once it used stream id `id`: its ids are the odd numbers, in order. */
function openedUpTo(id: number): number {
  return (id + 1) >>> 1;
}

/**
 * Counts a server session's abuse and, once one kind of it passes `limits`,
 * destroys the session with an H2AbuseError and GOAWAY ENHANCE_YOUR_CALM.
 * A stream counts as reset when it closes before its answer began, whoever
 * reset it; a stream the client opened that never reached the server (Node
 * or nghttp2 refused it) counts as refused, seen by the gap in stream ids
 * when the next one arrives. PINGs count only while no stream is open: a
 * client measuring its bandwidth pings while it receives. O(1) work per
 * stream and per frame counted.
 */
export function guardSession(session: Http2Session, limits: AbuseLimits = ABUSE_LIMITS): void {
  const resets = new SlidingCount(limits);
  const pings = new SlidingCount(limits);
  const settings = new SlidingCount(limits);
  let accepted = 0;
  let refused = 0;
  let open = 0;

  const end = (abuse: Abuse): void => {
    if (session.destroyed) return;
    session.destroy(new H2AbuseError(abuse, session.socket?.remoteAddress), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  };
  const onClose = (stream: ServerHttp2Stream): void => {
    if (!stream.headersSent && resets.add(now())) end('rapid_reset');
  };

  session.on('stream', (stream: ServerHttp2Stream) => {
    accepted++;
    const skipped = openedUpTo(stream.id ?? 0) - accepted - refused;
    if (skipped > 0) {
      refused += skipped;
      if (resets.add(now(), skipped)) return end('rapid_reset');
    }
    // a stream reset in the read that opened it is closed before it is announced
    if (stream.destroyed) return onClose(stream);
    open++;
    stream.once('close', () => {
      open--;
      onClose(stream);
    });
  });
  session.on('remoteSettings', () => {
    if (settings.add(now())) end('settings_flood');
  });
  // A stream opened in the read that carries the PING is announced only at
  // the end of that read; nghttp2's last stream id tells it is there.
  const noStreamOpen = (): boolean => open === 0 && openedUpTo(session.state.lastProcStreamID ?? 0) <= accepted + refused;
  session.on('ping', () => {
    if (noStreamOpen() && pings.add(now())) end('ping_flood');
  });
}
