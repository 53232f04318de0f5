// One request, top to bottom: identify → admit → route → rate limit → act
// (direct response or forward upstream). Metrics and the access log are written
// once, when the response closes (Exchange.finish).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ListenerLimits } from '../config/types.js';
import { forwardedClientCert } from '../listener/client-cert.js';
import { normalizePath, splitTarget } from '../router/normalize.js';
import { findRoute } from '../router/route-table.js';
import type { CompiledRoute, DirectResponse } from '../snapshot-types.js';
import type { ErrorCode } from './errors.js';
import { Exchange, type ListenerContext } from './exchange.js';
import { Forward } from './forward.js';
import { buildUpstreamHeaders, type CompiledHeaderOps } from './headers.js';

/** The response class of tandem's listeners: it carries its request's Exchange. */
export interface ExchangeCarrier {
  exchange: Exchange | null;
}

export function handleRequest(ctx: ListenerContext, req: IncomingMessage, res: ServerResponse & ExchangeCarrier): void {
  if (ctx.drain.draining && res.socket === null) {
    // Pipelined behind an answer still in progress, which the drain may make
    // the connection's last: go on only if the connection survives it, so the
    // application never runs a request whose answer is thrown away (the
    // client retries an unanswered pipelined request, RFC 9112 §9.3.2).
    res.once('socket', () => handleRequest(ctx, req, res));
    return;
  }
  const ex = begin(ctx, req, res);

  // admit
  const { path, query } = splitTarget(req.url ?? '');
  const normalized = normalizePath(path);
  const rejected = normalized === null ? 'bad_request' : admissionError(req, ctx.listener.config.limits);
  if (rejected !== null) return ex.fail(rejected, undefined, true);

  // route
  const listener = ctx.listener;
  const route = findRoute(listener, req, normalized!);
  if (route === undefined) return ex.fail('no_route', 'NR');
  ex.route = route;
  ex.metrics = route.metrics;

  // rate limit
  if (route.rateLimit !== null) {
    const wait = route.rateLimit.take(ex);
    if (wait > 0) return ex.fail('rate_limited', undefined, false, { 'retry-after': String(wait) });
  }

  // auth: the only stage that waits, so routes without it stay synchronous
  if (route.auth === null) return act(ex, route, normalized!, query, route.requestOps);
  route.auth.check(req.headers.authorization).then((outcome) => {
    // the client may have left while the keys were looked up
    if (ex.done) return;
    if (outcome.ok) act(ex, route, normalized!, query, outcome.ops);
    else ex.fail('unauthorized', undefined, false, { 'www-authenticate': outcome.challenge });
  });
}

/** Answers from tandem itself or forwards upstream, with `ops` (the route's, plus any forwarded claims) on the request headers. */
function act(ex: Exchange, route: CompiledRoute, normalized: string, query: string, ops: CompiledHeaderOps | undefined): void {
  const { ctx, req } = ex;
  const listener = ctx.listener;
  if (route.direct !== null) return sendDirect(ex, route.direct);
  const hasBody = requestHasBody(req);
  const maxBody = listener.config.limits.maxBodyBytes;
  if (maxBody > 0 && hasBody && Number(req.headers['content-length']) > maxBody) {
    return ex.fail('payload_too_large', undefined, true);
  }
  const cluster = route.pickCluster!();
  ex.cluster = cluster;
  const upstreamPath = (route.rewritePath === null ? normalized : route.rewritePath(normalized)) + query;
  const headers = buildUpstreamHeaders(req.rawHeaders, {
    clientIp: ex.clientIp,
    proto: ctx.proto,
    requestId: ex.requestId,
    traceparent: ex.traceparent,
    hostOverride: route.hostRewrite,
    clientCert: ctx.proto === 'https' ? forwardedClientCert(req.socket) : undefined,
    ops,
    dropUnderscored: listener.config.limits.headersWithUnderscores === 'drop',
  });
  const forward = new Forward(ex, route, cluster, upstreamPath, headers, hasBody ? req : null);
  ex.upstream = forward;
  forward.start();
}

/** Answers a request Node flagged before routing (an `Expect` other than 100-continue). */
export function rejectRequest(
  ctx: ListenerContext,
  req: IncomingMessage,
  res: ServerResponse & ExchangeCarrier,
  code: ErrorCode,
): void {
  begin(ctx, req, res).fail(code, undefined, true);
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
export function admissionError(req: IncomingMessage, limits: ListenerLimits): ErrorCode | null {
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
