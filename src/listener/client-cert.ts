// x-forwarded-client-cert for the upstream, in Envoy's format, from the
// client certificate the listener verified (mTLS).

import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** one value per connection: every request on it has the same peer */
const cache = new WeakMap<Socket, string | null>();

/** `Hash=<sha256 of the DER, hex>;Subject="<RFC 2253 subject>"`, or undefined without a verified client certificate. */
export function forwardedClientCert(socket: Socket): string | undefined {
  let value = cache.get(socket);
  if (value === undefined) {
    value = describePeer(socket as TLSSocket);
    cache.set(socket, value);
  }
  return value ?? undefined;
}

function describePeer(socket: TLSSocket): string | null {
  if (socket.authorized !== true) return null;
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return null;
  const hash = createHash('sha256').update(cert.raw).digest('hex');
  return `Hash=${hash};Subject="${quoted(rfc2253(cert.subject))}"`;
}

/** Node lists the subject's attributes one a line, most general first; RFC 2253 starts from the most specific. */
function rfc2253(subject: string): string {
  return subject.split('\n').filter((line) => line !== '').reverse().join(',');
}

function quoted(text: string): string {
  return text.replace(/["\\]/g, (c) => `\\${c}`);
}
