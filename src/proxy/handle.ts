// One request, top to bottom: identify → admit → route → rate limit → auth →
// act (direct response or forward upstream), whatever protocol carried it:
// the adapters in listener/ hand every request over as an Inbound with a
// Downstream to answer through. The stages up to act are the same for a
// WebSocket upgrade (listener/upgrade.ts), which acts by opening a tunnel.
// Metrics and the access log are written once, when the answer closes
// (Exchange.finish).

import type { ListenerLimits } from '../config/types.js';
import { forwardedClientCert } from '../listener/client-cert.js';
import { normalizePath, splitTarget } from '../router/normalize.js';
import { findRoute } from '../router/route-table.js';
import type { CompiledRoute, DirectResponse } from '../snapshot-types.js';
import type { ErrorCode } from './errors.js';
import type { Exchange, RequestRecord } from './exchange.js';
import { Forward } from './forward.js';
import { buildUpstreamHeaders, type CompiledHeaderOps } from './headers.js';
import type { Inbound } from './inbound.js';

/** A request going through the shared stages: an Exchange, or an upgrade's tunnel. */
export interface StagedRequest extends RequestRecord {
  readonly inbound: Inbound;
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

export function handle(ex: Exchange): void {
  runStages(ex, act);
}

/** Admits, routes, rate-limits and authenticates `rec`, then hands it to `proceed` unless a stage refused it. */
export function runStages<R extends StagedRequest>(rec: R, proceed: Act<R>): void {
  const { ctx, inbound } = rec;

  // admit
  const { path, query } = splitTarget(inbound.target);
  const normalized = normalizePath(path);
  const rejected = admissionError(inbound, normalized, ctx.listener.config.limits);
  if (rejected !== null) return rec.refuse(rejected);

  // route
  const route = findRoute(ctx.listener, inbound, normalized!);
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
  route.auth.check(inbound.headers.authorization).then((outcome) => {
    // the client may have left while the keys were looked up
    if (rec.done) return;
    if (outcome.ok) proceed(rec, route, upstreamPath, outcome.ops);
    else rec.refuse('unauthorized', { 'www-authenticate': outcome.challenge });
  });
}

/** Answers from tandem itself or forwards upstream. */
function act(ex: Exchange, route: CompiledRoute, upstreamPath: string, ops: CompiledHeaderOps | undefined): void {
  const inbound = ex.inbound;
  if (route.direct !== null) return sendDirect(ex, route.direct);
  const body = inbound.body;
  const maxBody = ex.ctx.listener.config.limits.maxBodyBytes;
  if (maxBody > 0 && body !== null && Number(inbound.headers['content-length']) > maxBody) return ex.refuse('payload_too_large');
  const cluster = route.pickCluster!();
  ex.cluster = cluster;
  const forward = new Forward(ex, route, cluster, upstreamPath, upstreamHeaders(ex, route, ops), body);
  ex.upstream = forward;
  forward.start();
}

/** The request headers sent upstream, for a forwarded request and a tunnel alike. */
export function upstreamHeaders(rec: StagedRequest, route: CompiledRoute, ops: CompiledHeaderOps | undefined): string[] {
  const { ctx, inbound } = rec;
  return buildUpstreamHeaders(inbound.rawHeaders, {
    clientIp: rec.clientIp,
    proto: ctx.proto,
    requestId: rec.requestId,
    traceparent: rec.traceparent,
    hostOverride: route.hostRewrite,
    clientCert: ctx.proto === 'https' ? forwardedClientCert(inbound.socket) : undefined,
    ops,
    dropUnderscored: ctx.listener.config.limits.headersWithUnderscores === 'drop',
  });
}

/**
 * What Node's parser lets through but a proxy must not: TRACE (and CONNECT),
 * a target that does not normalize, more header
 * lines than the limit (Node silently drops those past its own cap), an
 * empty or repeated Host on HTTP/1.1 (routing and the upstream could
 * disagree on which one counts), a Transfer-Encoding other than one
 * `chunked` line (Node accepts `gzip, chunked` and a list split over several
 * lines, which the upstream may frame differently: a smuggling vector), a
 * Host that disagrees with HTTP/2's :authority, and, unless allowed, a
 * header name with an underscore.
 */
function admissionError(inbound: Inbound, path: string | null, limits: ListenerLimits): ErrorCode | null {
  // CONNECT reaches here over HTTP/2 only (Node hands an HTTP/1.1 one to the listener)
  if (inbound.method === 'TRACE' || inbound.method === 'CONNECT') return 'method_not_allowed';
  if (path === null) return 'bad_request';
  const raw = inbound.rawHeaders;
  if (raw.length > limits.maxHeaders * 2) return 'headers_too_large';
  const rejectUnderscores = limits.headersWithUnderscores === 'reject';
  let hosts = 0;
  let encodings = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      hosts++;
      if (raw[i + 1] === '' || raw[i + 1] !== inbound.authority) return 'bad_request';
    } else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') {
      encodings++;
      if (raw[i + 1]!.length !== 7 || raw[i + 1]!.toLowerCase() !== 'chunked') return 'bad_request';
    } else if (rejectUnderscores && name.includes('_')) {
      return 'bad_request';
    }
  }
  if (encodings > 1) return 'bad_request';
  if (hosts !== 1 && inbound.protocol === 'HTTP/1.1') return 'bad_request';
  return null;
}

function sendDirect(ex: Exchange, direct: DirectResponse): void {
  const headers = ['content-type', 'text/plain; charset=utf-8', 'content-length', String(direct.body.length), 'x-request-id', ex.requestId];
  ex.bytesOut = direct.body.length;
  ex.down.start(direct.status, headers, ex.ctx.drain.draining);
  ex.down.end(direct.body);
}
