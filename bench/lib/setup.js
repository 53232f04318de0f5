// What every bench mode needs: a private temp dir, the upstreams, the
// 16 KiB request body, and the measurement of one run against one proxy;
// and the upstreams of the HTTP/2 scenarios, started when they are needed.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { firstJsonLine, startPinned, stopAll } from './processes.js';
import { LOAD_CPU } from './peers.js';
import { waitFor200, waitForH2 } from './net.js';
import { cpuMicros } from './proc-stats.js';
import { throughputLoop, openLoop, h2Loop, grpcLoop } from './load.js';
import { SAY_HELLO, grpcFrame } from './greeter.js';
import { workersScenario } from './workers-rows.js';

const upstreamJs = fileURLToPath(new URL('../upstream.js', import.meta.url));
const upstreamGrpcJs = fileURLToPath(new URL('../upstream-grpc.js', import.meta.url));

/** Each scenario's `protocol` (http1, workers, h2c, grpc) names the set of peers it runs against (run.js). */
export function scenarios({ ci, durationS }) {
  const closed = (name, label, path, extra = {}) => ({ name, label, protocol: 'http1', kind: 'closed', path, durationS, connections: 50, ...extra });
  const fixedRate = { name: 'fixed-rate', label: 'small GET at 2,000 req/s (open loop)', protocol: 'http1', kind: 'open', path: '/small', rate: 2000, durationS };
  // 5 connections of 10 streams: the 50 requests in flight of the HTTP/1.1 runs, multiplexed
  const h2 = { kind: 'closed', durationS, connections: 5, streams: 10 };
  const h2cGet = { ...h2, name: 'h2c-get', label: 'h2c small GET (h2load, 5 connections x 10 streams)', protocol: 'h2c', client: 'h2load', path: '/small' };
  const grpcUnary = { ...h2, name: 'grpc-unary', label: 'gRPC unary (grpc-js, 5 channels x 10 calls)', protocol: 'grpc', client: 'grpc', path: SAY_HELLO };
  if (ci) return [closed('small-get', 'small GET (closed loop, 50 connections)', '/small'), fixedRate, h2cGet];
  return [
    closed('small-get', 'small GET (closed loop, 50 connections)', '/small'),
    closed('big-get', '16 KiB GET (closed loop, 50 connections)', '/big'),
    closed('big-post', '16 KiB POST, small answer (closed loop, 50 connections)', '/upload', { method: 'POST', body: true }),
    fixedRate,
    workersScenario(durationS),
    h2cGet,
    grpcUnary,
  ];
}

/** How to tell that a server of `protocol` answers (lib/net.js waitForH2's request); none for http1, whose probe is a GET /small. */
export const H2_PROBES = {
  h2c: { headers: { ':path': '/small' } },
  grpc: { headers: { ':method': 'POST', ':path': SAY_HELLO, 'content-type': 'application/grpc', te: 'trailers' }, body: grpcFrame('ready') },
};

/** `probe`: an H2_PROBES entry for an HTTP/2 upstream; without it, GET /small over HTTP/1.1. */
async function startUpstreamProcess(script = upstreamJs, args = ['2'], probe = null) {
  const tracked = startPinned(LOAD_CPU, process.execPath, [script, ...args]);
  const { ports } = await firstJsonLine(tracked, 'upstream');
  const origin = `http://127.0.0.1:${ports[0]}`;
  await (probe ? waitForH2(origin, probe, tracked) : waitFor200(`${origin}/small`, tracked));
  return { tracked, pid: tracked.child.pid, ports };
}

/**
 * The upstreams of the HTTP/2 scenarios, started once into `ctx.h2`: h2c
 * (upstream.js over h2c) and grpc (upstream-grpc.js), two ports each, on the
 * load CPU.
 */
export async function prepareH2(ctx) {
  ctx.h2 ??= {
    h2c: await startUpstreamProcess(upstreamJs, ['2', 'h2c'], H2_PROBES.h2c),
    grpc: await startUpstreamProcess(upstreamGrpcJs, ['2'], H2_PROBES.grpc),
  };
  return ctx.h2;
}

/** Two upstream processes with two ports each, on the load CPU. */
export async function prepare() {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-'));
  const bodyFile = join(dir, 'body-16k.bin');
  writeFileSync(bodyFile, Buffer.alloc(16 * 1024, 'y'));
  const [first, second] = [await startUpstreamProcess(), await startUpstreamProcess()];
  // Interleaved so each two-endpoint cluster spans both processes.
  const upstreamPorts = [first.ports[0], second.ports[0], first.ports[1], second.ports[1]];
  return { dir, bodyFile, upstream: first, upstreams: [first, second], upstreamPorts };
}

export async function teardown(ctx) {
  await stopAll();
  if (ctx?.dir) rmSync(ctx.dir, { recursive: true, force: true });
}

function load(url, scenario, ctx, generator) {
  const { connections, streams, durationS } = scenario;
  if (scenario.kind === 'open') return openLoop({ url, rate: scenario.rate, durationS });
  if (scenario.client === 'h2load') return h2Loop({ url, connections, streams, durationS, dir: ctx.dir });
  if (scenario.client === 'grpc') return grpcLoop({ url, connections, streams, durationS });
  return throughputLoop({ generator, url, connections, durationS, method: scenario.method, bodyFile: scenario.body ? ctx.bodyFile : undefined });
}

/** One run of `scenario` against a running proxy, with its CPU cost per request; `generator` overrides the HTTP/1.1 closed-loop client (lib/load.js). */
export async function measure(proxy, scenario, ctx, generator) {
  const url = `${proxy.origin}${scenario.path}`;
  const before = cpuMicros(proxy.pid);
  const result = await load(url, scenario, ctx, generator);
  const cpu = cpuMicros(proxy.pid) - before;
  return { ...result, cpuUsPerReq: result.requests ? cpu / result.requests : null };
}

/**
 * The peers in the order round `round` (from 1) runs them: each round starts
 * one peer later, so no proxy always runs first, or always right after the
 * same one, while the machine's speed drifts (A B C, B C A, C A B, ...).
 */
export function inTurn(peers, round) {
  return peers.map((_, i) => peers[(i + round - 1) % peers.length]);
}
