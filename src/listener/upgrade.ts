// HTTP/1.1 Upgrade (WebSocket): routed like any request, then the two
// sockets are joined byte for byte until either side closes.

import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { rawErrorResponse, type ErrorCode } from '../proxy/errors.js';
import type { ListenerContext } from '../proxy/exchange.js';
import { clientAddress } from '../proxy/handle.js';
import { buildUpstreamHeaders } from '../proxy/headers.js';
import { requestIdFrom, traceFrom } from '../proxy/request-id.js';
import { normalizePath, splitTarget } from '../router/normalize.js';
import { findRoute } from '../router/route-table.js';

export async function tunnelUpgrade(
  ctx: ListenerContext,
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  tunnels: Set<Duplex>,
): Promise<void> {
  client.on('error', () => client.destroy());
  const requestId = requestIdFrom(req.headers['x-request-id']);
  const reject = (code: ErrorCode): void => {
    if (client.writable) client.end(rawErrorResponse(code, requestId));
    else client.destroy();
  };
  const { path, query } = splitTarget(req.url ?? '');
  const normalized = normalizePath(path);
  if (normalized === null) return reject('bad_request');
  const route = findRoute(ctx.listener, req, normalized);
  if (route === undefined || route.pickCluster === null) return reject('no_route');
  const cluster = route.pickCluster();
  const clientIp = clientAddress(req);
  const endpoint = cluster.cluster.pick({ headers: req.headers, clientIp });
  if (endpoint === undefined) return reject('no_healthy_upstream');

  const headers = buildUpstreamHeaders(req.rawHeaders, {
    clientIp,
    proto: ctx.proto,
    requestId,
    traceparent: traceFrom(req.headers.traceparent).traceparent,
    hostOverride: route.hostRewrite,
    ops: route.requestOps,
  });
  const upstreamPath = (route.rewritePath === null ? normalized : route.rewritePath(normalized)) + query;
  const abort = new AbortController();
  client.once('close', () => abort.abort());
  let upstream: Duplex;
  let responseHeaders: Record<string, string | string[] | undefined>;
  endpoint.begin();
  try {
    const data = await endpoint.pool.upgrade({
      path: upstreamPath,
      method: req.method ?? 'GET',
      headers,
      protocol: String(req.headers.upgrade ?? 'websocket'),
      signal: abort.signal,
    });
    upstream = data.socket;
    responseHeaders = data.headers;
  } catch {
    endpoint.end();
    return reject('upstream_connect_failure');
  }
  if (client.destroyed) {
    endpoint.end();
    upstream.destroy();
    return;
  }

  let head101 = 'HTTP/1.1 101 Switching Protocols\r\n';
  for (const name in responseHeaders) {
    const value = responseHeaders[name];
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) head101 += `${name}: ${v}\r\n`;
  }
  head101 += `x-request-id: ${requestId}\r\n\r\n`;
  client.write(head101);
  if (head.length > 0) upstream.write(head);

  tunnels.add(client);
  upstream.on('error', () => client.destroy());
  client.on('close', () => {
    tunnels.delete(client);
    upstream.destroy();
  });
  upstream.on('close', () => {
    endpoint.end();
    client.destroy();
  });
  upstream.pipe(client);
  client.pipe(upstream);
}
