// Which protocol a new connection speaks, before anything parses it: on TLS
// the one ALPN agreed on; in plaintext, HTTP/2 when the client's first bytes
// are HTTP/2's connection preface (prior knowledge), else HTTP/1.x. The
// listener's Node server keeps every connection it accepts; only those that
// speak HTTP/2 leave its HTTP/1 parser for the Http2Front.

import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ListenerProtocol } from '../config/types.js';
import type { Http2Front } from './http2-front.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

type ConnectionListener = (this: Server, socket: Socket) => void;

/**
 * Puts the choice in front of the server's HTTP/1 connection handling.
 * `waiting` holds the plaintext connections whose first bytes have not
 * decided yet (the drain closes them); one silent for `sniffTimeout` ms is
 * closed.
 */
export function switchProtocols(server: Server, tls: boolean, protocols: readonly ListenerProtocol[], h2: Http2Front, waiting: Set<Socket>, sniffTimeout: number): void {
  const event = tls ? 'secureConnection' : 'connection';
  const listeners = server.listeners(event);
  if (listeners.length !== 1) throw new Error(`expected Node's one HTTP/1 '${event}' listener, found ${listeners.length}`);
  const http1 = listeners[0] as ConnectionListener;
  server.removeListener(event, http1);
  const allowsHttp1 = protocols.includes('http1');
  if (tls) {
    server.on(event, (socket: TLSSocket) => {
      if (socket.alpnProtocol === 'h2') h2.accept(socket);
      else if (allowsHttp1) http1.call(server, socket);
      else socket.destroy();
    });
    return;
  }
  server.on(event, (socket: Socket) => sniff(socket, waiting, sniffTimeout, (isH2, head) => {
    if (isH2) {
      socket.pause();
      socket.unshift(head);
      h2.accept(socket);
    } else if (allowsHttp1) {
      http1.call(server, socket);
      // Node's parser now owns the socket; the bytes read so far go to it first.
      socket.emit('data', head);
    } else {
      socket.destroy();
    }
  }));
}

function sniff(socket: Socket, waiting: Set<Socket>, timeout: number, decide: (isH2: boolean, head: Buffer) => void): void {
  let head: Buffer | null = null;
  const onData = (chunk: Buffer): void => {
    head = head === null ? chunk : Buffer.concat([head, chunk]);
    const n = Math.min(head.length, PREFACE.length);
    const isH2 = head.compare(PREFACE, 0, n, 0, n) === 0;
    // a prefix of the preface could still turn out to be, say, a POST
    if (isH2 && n < PREFACE.length) return;
    stop();
    decide(isH2, head);
  };
  const onGone = (): void => {
    stop();
    socket.destroy();
  };
  const stop = (): void => {
    socket.removeListener('data', onData);
    socket.removeListener('error', onGone);
    socket.removeListener('timeout', onGone);
    socket.removeListener('close', stop);
    socket.setTimeout(0);
    waiting.delete(socket);
  };
  waiting.add(socket);
  socket.on('data', onData);
  socket.on('error', onGone);
  socket.on('timeout', onGone);
  socket.on('close', stop);
  socket.setTimeout(timeout);
}
