// The request as every stage sees it, whatever protocol carried it: the
// protocol adapters (listener/http1.ts, listener/http2.ts, the WebSocket
// upgrade) translate into it, and nothing past them asks which one it was.

import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';

export type HttpProtocol = 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2';

export interface Inbound {
  readonly protocol: HttpProtocol;
  readonly method: string;
  /** the request target as received: path and query */
  readonly target: string;
  /** Host on HTTP/1.x, :authority on HTTP/2 */
  readonly authority: string | undefined;
  /** the header fields as flat name/value pairs, as received: no pseudo-headers */
  readonly rawHeaders: string[];
  /** the same by lower-case name */
  readonly headers: IncomingHttpHeaders;
  /** null when the request has no body */
  readonly body: Readable | null;
  /** the whole body arrived (read or not): false while part of it is still on its way */
  readonly bodyReceived: boolean;
  /** the client's connection: its address and, on TLS, its certificate */
  readonly socket: Socket;
}

/** OpenTelemetry's network.protocol.version of each protocol */
export const PROTOCOL_VERSION: Readonly<Record<HttpProtocol, string>> = { 'HTTP/1.0': '1.0', 'HTTP/1.1': '1.1', 'HTTP/2': '2' };
