// One request, top to bottom: identify → admit → route → rate limit → auth →
// act (direct response or forward upstream). The stages up to act are the
// same for a WebSocket upgrade (listener/upgrade.ts), which acts by opening a
// tunnel. Metrics and the access log are written once, when the response
// closes (Exchange.finish).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ListenerLimits } from '../config/types.js';
import { forwardedClientCert } from '../listener/client-cert.js';
import { normalizePath, splitTarget } from '../router/normalize.js';
import { findRoute } from '../router/route-table.js';
import type { CompiledRoute, DirectResponse } from '../snapshot-types.js';
import type { ErrorCode } from './errors.js';
import { Exchange, type ListenerContext, type RequestRecord } from './exchange.js';
import { Forward } from './forward.js';
import { buildUpstreamHeaders, type CompiledHeaderOps } from './headers.js';

/** The response class of tandem's listeners: it carries its request's Exchange. */
export interface ExchangeCarrier {
  exchange: Exchange | null;
}

/** A request going through the shared stages: an Exchange, or an upgrade's tunnel. */
export interface StagedRequest extends RequestRecord {
  readonly req: IncomingMessage;
  /** answered, or the client left: a late auth answer is dropped */
  readonly done: boolean;
  /** Answers with tandem's error `code` (its flag, `extra` headers, the connection closed when the request itself is at fault). */
  refuse(code: ErrorCode, extra?: Record<string, string>): void;
}

/**
 * What follows the shared stages: `upstreamPath` is the normalized, rewritten
 * path plus the query; `ops` the request header ops (the route's, plus any
 * forwarded claims).
 */
export type Act<R extends StagedRequest> = (rec: R, route: CompiledRoute, upstreamPath: string, ops: CompiledHeaderOps | undefined) => void;

export function handleRequest(ctx: ListenerContext, req: IncomingMessage, res: ServerResponse & ExchangeCarrier): void {
  if (ctx.drain.draining && res.socket === null) {
    // Pipelined behind an answer still in progress, which the drain may make
    // the connection's last: go on only if the connection survives it, so the
    // application never runs a request whose answer is thrown away (the
    // client retries an unanswered pipelined request, RFC 9112 §9.3.2).
    res.once('socket', () => handleRequest(ctx, req, res));
    return;
  }
  runStages(begin(ctx, req, res), act);
}

/** Admits, routes, rate-limits and authenticates `rec`, then hands it to `proceed` unless a stage refused it. */
export function runStages<R extends StagedRequest>(rec: R, proceed: Act<R>): void {
  const { ctx, req } = rec;

  // admit
  const { path, query } = splitTarget(req.url ?? '');
  const normalized = normalizePath(path);
  const rejected = normalized === null ? 'bad_request' : admissionError(req, ctx.listener.config.limits);
  if (rejected !== null) return rec.refuse(rejected);

  // route
  const route = findRoute(ctx.listener, req, normalized!);
  if (route === undefined) return rec.refuse('no_route');
  rec.route = route;
  rec.metrics = route.metrics;

  // rate limit
  if (route.rateLimit !== null) {
    const wait = route.rateLimit.take(rec);
    if (wait > 0) return rec.refuse('rate_limited', { 'retry-after': String(wait) });
  }

  const upstreamPath = (route.rewritePath === null ? normalized! : route.rewritePath(normalized!)) + query;

  // auth: the only stage that waits, so routes without it stay synchronous
  if (route.auth === null) return proceed(rec, route, upstreamPath, route.requestOps);
  route.auth.check(req.headers.authorization).then((outcome) => {
    // the client may have left while the keys were looked up
    if (rec.done) return;
    if (outcome.ok) proceed(rec, route, upstreamPath, outcome.ops);
    else rec.refuse('unauthorized', { 'www-authenticate': outcome.challenge });
  });
}

/** Answers from tandem itself or forwards upstream. */
function act(ex: Exchange, route: CompiledRoute, upstreamPath: string, ops: CompiledHeaderOps | undefined): void {
  const req = ex.req;
  if (route.direct !== null) return sendDirect(ex, route.direct);
  const hasBody = requestHasBody(req);
  const maxBody = ex.ctx.listener.config.limits.maxBodyBytes;
  if (maxBody > 0 && hasBody && Number(req.headers['content-length']) > maxBody) return ex.refuse('payload_too_large');
  const cluster = route.pickCluster!();
  ex.cluster = cluster;
  const forward = new Forward(ex, route, cluster, upstreamPath, upstreamHeaders(ex, route, ops), hasBody ? req : null);
  ex.upstream = forward;
  forward.start();
}

/** The request headers sent upstream, for a forwarded request and a tunnel alike. */
export function upstreamHeaders(rec: StagedRequest, route: CompiledRoute, ops: CompiledHeaderOps | undefined): string[] {
  const { ctx, req } = rec;
  return buildUpstreamHeaders(req.rawHeaders, {
    clientIp: rec.clientIp,
    proto: ctx.proto,
    requestId: rec.requestId,
    traceparent: rec.traceparent,
    hostOverride: route.hostRewrite,
    clientCert: ctx.proto === 'https' ? forwardedClientCert(req.socket) : undefined,
    ops,
    dropUnderscored: ctx.listener.config.limits.headersWithUnderscores === 'drop',
  });
}

/** Answers a request Node flagged before routing (an `Expect` other than 100-continue). */
export function rejectRequest(
  ctx: ListenerContext,
  req: IncomingMessage,
  res: ServerResponse & ExchangeCarrier,
  code: ErrorCode,
): void {
  begin(ctx, req, res).refuse(code);
}

/** The exchange of a new request. */
function begin(ctx: ListenerContext, req: IncomingMessage, res: ServerResponse & ExchangeCarrier): Exchange {
  const ex = new Exchange(ctx, req, res);
  res.exchange = ex;
  res.on('close', onResponseClose);
  return ex;
}

function onResponseClose(this: ServerResponse & ExchangeCarrier): void {
  this.exchange!.finish();
}

/**
 * What Node's parser lets through but a proxy must not: TRACE, more header
 * lines than the limit (Node silently drops those past its own cap), an
 * empty or repeated Host on HTTP/1.1 (routing and the upstream could
 * disagree on which one counts), a Transfer-Encoding other than one
 * `chunked` line (Node accepts `gzip, chunked` and a list split over several
 * lines, which the upstream may frame differently: a smuggling vector), and,
 * unless allowed, a header name with an underscore.
 */
function admissionError(req: IncomingMessage, limits: ListenerLimits): ErrorCode | null {
  if (req.method === 'TRACE') return 'method_not_allowed';
  const raw = req.rawHeaders;
  if (raw.length > limits.maxHeaders * 2) return 'headers_too_large';
  const rejectUnderscores = limits.headersWithUnderscores === 'reject';
  let hosts = 0;
  let encodings = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      hosts++;
      if (raw[i + 1] === '') return 'bad_request';
    } else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') {
      encodings++;
      if (raw[i + 1]!.length !== 7 || raw[i + 1]!.toLowerCase() !== 'chunked') return 'bad_request';
    } else if (rejectUnderscores && name.includes('_')) {
      return 'bad_request';
    }
  }
  if (encodings > 1) return 'bad_request';
  if (hosts !== 1 && req.httpVersionMinor === 1) return 'bad_request';
  return null;
}

function requestHasBody(req: IncomingMessage): boolean {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  const len = h['content-length'];
  return len !== undefined && len !== '0';
}

function sendDirect(ex: Exchange, direct: DirectResponse): void {
  const res = ex.res;
  res.statusCode = direct.status;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.setHeader('content-length', direct.body.length);
  res.setHeader('x-request-id', ex.requestId);
  if (ex.ctx.drain.draining) res.setHeader('connection', 'close');
  ex.bytesOut = direct.body.length;
  res.end(direct.body);
}
