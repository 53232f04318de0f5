// The peers of the HTTP/2 scenarios, one set per protocol (h2c, grpc): the
// upstream directly, tandem, a bare node:http2 pass-through (with and without
// tandem's V8 flags, as bare undici on HTTP/1.1) and nginx. Each
// set is started for its protocol's scenarios and stopped after them, so
// that a peer's peak RSS is that protocol's alone.
import { fileURLToPath } from 'node:url';
import { startPinned } from './processes.js';
import { freePort, waitForH2 } from './net.js';
import { PROXY_CPU, started, startDirect, startTandem, startNginx, shippedFlags } from './peers.js';
import { H2_PROBES } from './setup.js';

const bareHttp2 = fileURLToPath(new URL('../peers/bare-http2.js', import.meta.url));
const template = new URL('../tandem.h2.bench.yaml', import.meta.url);

/** `ctx.h2` holds both upstreams (setup.js prepareH2): `protocol`'s serves every peer but tandem, whose template routes to both. */
function h2Peers(protocol) {
  const probe = (origin, tracked) => waitForH2(origin, H2_PROBES[protocol], tracked);
  const upstream = (ctx) => ctx.h2[protocol];
  const bare = async (ctx, nodeFlags) => {
    const port = await freePort();
    const tracked = startPinned(PROXY_CPU, process.execPath, [...nodeFlags, bareHttp2, String(port), `http://127.0.0.1:${upstream(ctx).ports[0]}`]);
    return started(tracked, port, undefined, probe);
  };
  return [
    { name: 'direct', label: 'upstream directly', start: (ctx) => startDirect({ upstream: upstream(ctx) }) },
    {
      name: 'tandem',
      label: 'tandem',
      start: ({ dir, h2 }) => startTandem({ dir, upstreamPorts: [...h2.h2c.ports, ...h2.grpc.ports], template, probe, tag: `tandem-${protocol}` }),
    },
    { name: 'bare-http2', label: 'bare node:http2 + undici h2c', start: (ctx) => bare(ctx, []) },
    { name: 'bare-http2-flags', label: "bare node:http2, tandem's flags", start: (ctx) => bare(ctx, shippedFlags()) },
    {
      name: 'nginx',
      label: protocol === 'grpc' ? 'nginx (grpc_pass, upstream keepalive)' : 'nginx (h2c listener, grpc_pass)',
      start: ({ dir, ...ctx }) => startNginx({ dir, upstreamPorts: upstream(ctx).ports, protocol, probe }),
    },
  ];
}

export const H2_PEERS = { h2c: h2Peers('h2c'), grpc: h2Peers('grpc') };
