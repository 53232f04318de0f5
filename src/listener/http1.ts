// The HTTP/1.x adapter: Node's request and response translated into the
// protocol-neutral Inbound and Downstream, then handed to the stages
// (proxy/handle.ts). It decides nothing about the request.

import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { http } from '../node-http.js';
import { presentTrailers, type Downstream, type Trailers } from '../proxy/downstream.js';
import type { ErrorCode } from '../proxy/errors.js';
import { Exchange, type ListenerContext } from '../proxy/exchange.js';
import { handle } from '../proxy/handle.js';
import type { HttpProtocol, Inbound } from '../proxy/inbound.js';

/** The response class of tandem's HTTP/1.x listeners: it carries its request's Exchange. */
export class ProxyResponse extends http.ServerResponse {
  exchange: Exchange | null = null;
}

export function serveHttp1(ctx: ListenerContext, req: IncomingMessage, res: ProxyResponse): void {
  if (ctx.drain.draining && res.socket === null) {
    // Pipelined behind an answer still in progress, which the drain may make
    // the connection's last: go on only if the connection survives it, so the
    // application never runs a request whose answer is thrown away (the
    // client retries an unanswered pipelined request, RFC 9112 §9.3.2).
    res.once('socket', () => serveHttp1(ctx, req, res));
    return;
  }
  handle(begin(ctx, req, res));
}

/** Answers a request Node flagged before routing (an `Expect` other than 100-continue). */
export function refuseHttp1(ctx: ListenerContext, req: IncomingMessage, res: ProxyResponse, code: ErrorCode): void {
  begin(ctx, req, res).refuse(code);
}

function begin(ctx: ListenerContext, req: IncomingMessage, res: ProxyResponse): Exchange {
  const ex = new Exchange(ctx, new Http1Inbound(req), new Http1Answer(res));
  res.exchange = ex;
  res.on('close', onResponseClose);
  return ex;
}

function onResponseClose(this: ProxyResponse): void {
  this.exchange!.finish();
}

export class Http1Inbound implements Inbound {
  readonly protocol: HttpProtocol;
  readonly method: string;
  readonly target: string;
  readonly authority: string | undefined;
  readonly rawHeaders: string[];
  readonly headers: IncomingHttpHeaders;
  readonly body: Readable | null;
  readonly socket: Socket;

  constructor(private readonly req: IncomingMessage) {
    this.protocol = req.httpVersionMinor === 0 ? 'HTTP/1.0' : 'HTTP/1.1';
    this.method = req.method!;
    this.target = req.url ?? '';
    const headers = req.headers;
    this.headers = headers;
    this.authority = headers.host;
    this.rawHeaders = req.rawHeaders;
    this.body = hasBody(headers) ? req : null;
    this.socket = req.socket;
  }

  get bodyReceived(): boolean {
    return this.req.complete;
  }
}

function hasBody(h: IncomingHttpHeaders): boolean {
  if (h['transfer-encoding'] !== undefined) return true;
  const len = h['content-length'];
  return len !== undefined && len !== '0';
}

class Http1Answer implements Downstream {
  constructor(private readonly res: ServerResponse) {}

  get status(): number {
    return this.res.headersSent ? this.res.statusCode : 0;
  }

  get complete(): boolean {
    return this.res.writableFinished;
  }

  get closed(): boolean {
    return this.res.destroyed;
  }

  start(status: number, headers: string[], close: boolean): void {
    // Node then answers `connection: close` and ends the socket after it.
    if (close) this.res.shouldKeepAlive = false;
    this.res.writeHead(status, headers);
  }

  write(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }

  onDrain(resume: () => void): void {
    this.res.once('drain', resume);
  }

  end(body?: Buffer | string, trailers?: Trailers | null): void {
    // Node sends trailers only on a chunked answer; one framed by its length has no room for them.
    const fields = presentTrailers(trailers);
    if (fields !== null) this.res.addTrailers(fields);
    this.res.end(body);
  }

  abort(): void {
    this.res.destroy();
  }
}
