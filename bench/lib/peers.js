// The proxies under test. Each `start` returns a running server pinned to the
// proxy CPU, or throws with the reason it could not start.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startPinned, stop } from './processes.js';
import { freePort, waitFor200 } from './net.js';
import { writeTandemConfig } from './tandem-config.js';
import { nginxBinary, writeNginxConfig } from './nginx.js';

export const PROXY_CPU = 0;
export const LOAD_CPU = 1;

const node = process.execPath;
const here = (relative) => fileURLToPath(new URL(relative, import.meta.url));
const tandemCli = here('../../dist/cli.js');

/**
 * Waits for the admin's `readyUrl` (if any), then for the proxy to answer
 * through its listener: an HTTP/1.1 GET /small unless `probe` (a function
 * of the origin) says otherwise. Stops the process if it never does.
 */
export async function started(tracked, port, readyUrl, probe) {
  const origin = `http://127.0.0.1:${port}`;
  try {
    if (readyUrl) await waitFor200(readyUrl, tracked);
    await (probe ? probe(origin, tracked) : waitFor200(`${origin}/small`, tracked));
  } catch (err) {
    await stop(tracked);
    throw err;
  }
  return { tracked, pid: tracked.child.pid, origin };
}

/** The upstream itself: no proxy in the way. CPU and RSS are the upstream's. */
export async function startDirect({ upstream }) {
  return { tracked: upstream.tracked, pid: upstream.pid, origin: `http://127.0.0.1:${upstream.ports[0]}`, shared: true };
}

/** The Node flags tandem ships with: those of dist/cli.js's shebang line, so the bench runs tandem as users do. */
export function shippedFlags() {
  const first = readFileSync(tandemCli, 'utf8').split('\n', 1)[0];
  const m = /^#!.*\bnode\b(.*)$/.exec(first);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
}

/**
 * `template`, `collectorPort`, `workers`: as writeTandemConfig's; `probe`: how to tell its listener answers (see `started`);
 * `cpus`: taskset's CPU list (the proxy CPU by default). The result also has the admin API's `adminOrigin`.
 */
export async function startTandem({ dir, upstreamPorts, nodeFlags, tag = 'tandem', template, collectorPort, probe, workers, cpus = PROXY_CPU }) {
  nodeFlags ??= shippedFlags();
  if (!existsSync(tandemCli)) throw new Error('dist/cli.js is missing (npm run build)');
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  const config = writeTandemConfig({ dir, listenPort, adminPort, upstreamPorts, tag, template, collectorPort, workers });
  const tracked = startPinned(cpus, node, [...nodeFlags, tandemCli, '--config', config]);
  const adminOrigin = `http://127.0.0.1:${adminPort}`;
  return { ...(await started(tracked, listenPort, `${adminOrigin}/ready`, probe)), adminOrigin };
}

export async function startHttpProxy({ upstreamPorts }) {
  const port = await freePort();
  const tracked = startPinned(PROXY_CPU, node, [here('../peers/http-proxy.js'), String(port), `http://127.0.0.1:${upstreamPorts[0]}`]);
  return started(tracked, port);
}

/** `nodeFlags`: none for the plain row (V8's defaults, as a user would run it); tandem's own for the row beside it and the profile mode. */
export async function startBareUndici({ upstreamPorts, nodeFlags = [] }) {
  const port = await freePort();
  const tracked = startPinned(PROXY_CPU, node, [...nodeFlags, here('../peers/bare-undici.js'), String(port), `http://127.0.0.1:${upstreamPorts[0]}`]);
  return started(tracked, port);
}

export async function startFastifyReplyFrom({ upstreamPorts }) {
  const port = await freePort();
  const tracked = startPinned(PROXY_CPU, node, [here('../peers/fastify-reply-from.js'), String(port), `http://127.0.0.1:${upstreamPorts[0]}`]);
  return started(tracked, port);
}

/** `protocol`: http1 (the default), h2c or grpc (lib/nginx.js); `probe` as for `started`. */
export async function startNginx({ dir, upstreamPorts, protocol, probe }) {
  const binary = nginxBinary();
  if (!binary) throw new Error('nginx is not installed (apt-get install nginx)');
  const port = await freePort();
  const { path, prefix } = writeNginxConfig({ dir, listenPort: port, upstreamPort: upstreamPorts[0], protocol });
  const tracked = startPinned(PROXY_CPU, binary, ['-p', prefix, '-e', `${prefix}/error.log`, '-c', path]);
  return started(tracked, port, undefined, probe);
}

export const PEERS = [
  { name: 'direct', label: 'upstream directly', start: startDirect },
  // the same upstream under autocannon: where the two clients' ceilings differ, autocannon was the bottleneck
  { name: 'direct-autocannon', label: 'upstream directly, autocannon', start: startDirect, generator: 'autocannon', closedOnly: true },
  { name: 'tandem', label: 'tandem', start: startTandem },
  { name: 'http-proxy', label: 'http-proxy (keep-alive agent)', start: startHttpProxy },
  { name: 'fastify-reply-from', label: 'fastify + @fastify/reply-from', start: startFastifyReplyFrom },
  { name: 'bare-undici', label: 'bare undici Pool.stream', start: startBareUndici },
  // the same pass-through with tandem's V8 flags: the flags' share of the gap, in every run
  { name: 'bare-undici-flags', label: "bare undici, tandem's flags", start: (ctx) => startBareUndici({ ...ctx, nodeFlags: shippedFlags() }) },
  { name: 'nginx', label: 'nginx (upstream keepalive)', start: startNginx },
];
