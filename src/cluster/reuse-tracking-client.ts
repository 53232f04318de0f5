// The free retry (docs/behaviour.md) is for a request that failed on a
// keep-alive connection the upstream closed as it was reused; a reset on a
// connection opened for the request says the upstream refuses it. undici's
// handler never learns which connection it got, so the pool's clients tell it.

import type { Client as UndiciClient, Dispatcher } from 'undici';
import { Client, kConnected } from '../undici.js';
import { iterableBody } from './stream-body.js';

/** A dispatch handler told whether its request went out on a connection that was already open. */
export interface ReuseAware {
  reusedConnection: boolean;
}

/**
 * The Client an endpoint's pool makes. The pool hands a request only to a
 * client that is free (one request at a time per HTTP/1.1 connection, up to
 * the endpoint's stream limit per HTTP/2 one), and a free client with an
 * open connection writes the request on it at once: open at dispatch means
 * reused. On HTTP/2 that is a session that already carried streams: the
 * requests that opened it were written the moment it connected, before any
 * later dispatch, and a session that got GOAWAY no longer counts as open.
 * One field read per request, no allocation.
 */
export class ReuseTrackingClient extends Client {
  /** may speak HTTP/2, whose stream bodies go to undici as iterables (stream-body.ts) */
  private readonly h2: boolean;

  constructor(origin: string | URL, options: UndiciClient.Options) {
    super(origin, options);
    this.h2 = options.allowH2 === true;
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const aware = handler as Partial<ReuseAware>;
    if (aware.reusedConnection !== undefined) aware.reusedConnection = (this as unknown as Record<symbol, boolean>)[kConnected]!;
    return super.dispatch(this.h2 ? iterableBody(options) : options, handler);
  }
}
