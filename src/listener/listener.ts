// One HTTP(S) listener: Node's server with the configured limits, tandem's own
// answers for what Node rejects before a request exists, WebSocket tunnels,
// HTTP/2 beside HTTP/1.x on the same port, and the drain steps.

import type { IncomingMessage, Server, ServerOptions, ServerResponse } from 'node:http';
import { http } from '../node-http.js';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenerLimits } from '../config/types.js';
import { ERRORS, rawErrorResponse, type ErrorCode } from '../proxy/errors.js';
import { RequestRecord, type ListenerContext } from '../proxy/exchange.js';
import { Http1Inbound, ProxyResponse, refuseHttp1, serveHttp1 } from './http1.js';
import { Http2Front } from './http2-front.js';
import { switchProtocols } from './protocol-switch.js';
import { serverTlsOptions, watchTlsFiles } from './tls.js';
import { tunnelUpgrade } from './upgrade.js';

// Node checks header and request timeouts on this interval; its default
// (30 s) would let a 10 s headersTimeout fire at up to 40 s.
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

export class Listener {
  readonly server: Server;
  /** open WebSocket tunnels: they outlive their request and are drained separately */
  readonly tunnels = new Set<Duplex>();
  /** the HTTP/2 side, when the listener serves h2 or h2c */
  private readonly h2: Http2Front | null = null;
  /** plaintext connections whose first bytes have not yet told their protocol */
  private readonly undecided = new Set<Socket>();

  constructor(readonly ctx: ListenerContext) {
    const { limits, tls, protocols } = ctx.listener.config;
    const http2 = protocols.includes('h2') || protocols.includes('h2c');
    const options: ServerOptions = {
      ServerResponse: ProxyResponse as typeof ServerResponse,
      maxHeaderSize: limits.maxHeaderBytes,
      // Node refuses a head deadline past the whole request's: a shorter
      // requestTimeout bounds the head too, rather than being widened.
      headersTimeout: Math.min(limits.headersTimeout, limits.requestTimeout),
      requestTimeout: limits.requestTimeout,
      keepAliveTimeout: limits.idleTimeout,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
      // handle() answers a missing Host itself, with tandem's JSON error
      requireHostHeader: false,
      joinDuplicateHeaders: false,
      // An offer to switch to h2c (curl --http2 on http://) is declined by
      // answering over HTTP/1.1 (RFC 9113 dropped that upgrade); only other
      // upgrades (WebSocket) become tunnels.
      shouldUpgradeCallback: (req: IncomingMessage) => !isH2cOffer(req.headers.upgrade),
    };
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => serveHttp1(ctx, req, res as ProxyResponse);
    if (tls === undefined) {
      this.server = http.createServer(options, onRequest);
    } else {
      const alpn = http2 ? { ALPNProtocols: protocols.includes('http1') ? ['h2', 'http/1.1'] : ['h2'] } : {};
      const server = https.createServer({ ...options, ...serverTlsOptions(tls), ...alpn }, onRequest);
      const unwatch = watchTlsFiles(server, ctx.listener.config.name, tls);
      server.on('close', unwatch);
      this.server = server;
    }
    if (http2) {
      this.h2 = new Http2Front(ctx);
      switchProtocols(this.server, tls !== undefined, protocols, this.h2, this.undecided, limits.headersTimeout);
    }
    applyHeaderCount(this.server, limits);
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => onClientError(ctx, err, socket));
    this.server.on('connect', (req: IncomingMessage, socket: Socket) => new RawAnswer(ctx, req, socket).send(socket, 'method_not_allowed'));
    // Node answers an unknown expectation with a bare 417 unless asked.
    this.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) =>
      refuseHttp1(ctx, req, res as ProxyResponse, 'expectation_failed'),
    );
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      tunnelUpgrade(ctx, req, socket, head, this.tunnels),
    );
  }

  get name(): string {
    return this.ctx.listener.config.name;
  }

  /** Binds (`reusePort`: beside other workers' sockets); the error names the listener, address and port. */
  listen(reusePort = false): Promise<void> {
    const { address, port } = this.ctx.listener.config;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new Error(`cannot bind listener "${this.name}" on ${address}:${port}: ${err.code ?? err.message}`));
      };
      this.server.once('error', onError);
      this.server.listen({ port, host: address, reusePort }, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  /** Drain, step one: accept nothing new, close idle keep-alive connections, send HTTP/2 clients GOAWAY. */
  stopAccepting(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    this.h2?.goAway();
    for (const s of this.undecided) s.destroy();
    return closed;
  }

  /** Drain, last step: whatever is still open is cut. */
  destroyAll(): void {
    this.server.closeAllConnections();
    this.h2?.destroyAll();
    for (const t of this.tunnels) t.destroy();
  }
}

function isH2cOffer(upgrade: string | undefined): boolean {
  return upgrade !== undefined && upgrade.trim().toLowerCase() === 'h2c';
}

/** Node silently drops header lines past its cap: keep one past ours so handle() can answer 431. */
function applyHeaderCount(server: Server, limits: ListenerLimits): void {
  server.maxHeadersCount = limits.maxHeaders + 1;
}

const CLIENT_ERRORS: Record<string, ErrorCode> = {
  HPE_HEADER_OVERFLOW: 'headers_too_large',
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 'payload_too_large',
  ERR_HTTP_REQUEST_TIMEOUT: 'request_timeout',
};

/**
 * A request answered with raw bytes on its socket before any route was
 * looked up, logged and counted like any other: a CONNECT, or one Node
 * refused (its parser or its head/request timeout) before it made a request
 * object of it, flagged DPE.
 */
class RawAnswer extends RequestRecord {
  constructor(ctx: ListenerContext, req: IncomingMessage | null, socket: Socket) {
    super(ctx, req === null ? null : new Http1Inbound(req), socket);
    if (req === null) this.flag('DPE');
  }

  /** Answers with tandem's error and closes the connection. */
  send(socket: Duplex, code: ErrorCode): void {
    socket.end(rawErrorResponse(code, this.requestId));
    this.record(ERRORS[code].status);
  }
}

/**
 * Node's parser rejected the bytes, or a header/request timeout fired. When a
 * request was already being served, it is answered through its exchange (so
 * the upstream try is cancelled and the access log has it); otherwise raw
 * bytes go out and the connection closes. Either way the answer carries
 * flag DPE; a connection that is gone gets no answer and is no request.
 */
function onClientError(ctx: ListenerContext, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const code = CLIENT_ERRORS[err.code ?? ''] ?? 'bad_request';
  const inFlight = (socket as Socket & { _httpMessage?: ProxyResponse | null })._httpMessage;
  if (inFlight?.exchange && !inFlight.headersSent) {
    inFlight.exchange.fail(code, 'DPE', true);
    return;
  }
  // A response already begun (handle() may have refused the head the parser
  // only now rejects the body of) must not be followed by a second one: a
  // finished one is flushed then closed, a streaming one is cut.
  if (inFlight?.headersSent) {
    if (inFlight.writableEnded) socket.end();
    else socket.destroy();
    return;
  }
  new RawAnswer(ctx, null, socket).send(socket, code);
}
