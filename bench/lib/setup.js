// What every bench mode needs: a private temp dir, the upstreams, the
// 16 KiB request body, and the measurement of one run against one proxy.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { firstJsonLine, startPinned, stopAll } from './processes.js';
import { LOAD_CPU } from './peers.js';
import { waitFor200 } from './net.js';
import { cpuMicros } from './proc-stats.js';
import { throughputLoop, openLoop } from './load.js';

const upstreamJs = fileURLToPath(new URL('../upstream.js', import.meta.url));

export function scenarios({ ci, durationS }) {
  const closed = (name, label, path, extra = {}) => ({ name, label, kind: 'closed', path, durationS, connections: 50, ...extra });
  const fixedRate = { name: 'fixed-rate', label: 'small GET at 2,000 req/s (open loop)', kind: 'open', path: '/small', rate: 2000, durationS };
  if (ci) return [closed('small-get', 'small GET (closed loop, 50 connections)', '/small'), fixedRate];
  return [
    closed('small-get', 'small GET (closed loop, 50 connections)', '/small'),
    closed('big-get', '16 KiB GET (closed loop, 50 connections)', '/big'),
    closed('big-post', '16 KiB POST, small answer (closed loop, 50 connections)', '/upload', { method: 'POST', body: true }),
    fixedRate,
  ];
}

async function startUpstreamProcess() {
  const tracked = startPinned(LOAD_CPU, process.execPath, [upstreamJs, '2']);
  const { ports } = await firstJsonLine(tracked, 'upstream');
  await waitFor200(`http://127.0.0.1:${ports[0]}/small`, tracked);
  return { tracked, pid: tracked.child.pid, ports };
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

/** One run of `scenario` against a running proxy, with its CPU cost per request; `generator` overrides the closed-loop client (lib/load.js). */
export async function measure(proxy, scenario, ctx, generator) {
  const url = `${proxy.origin}${scenario.path}`;
  const before = cpuMicros(proxy.pid);
  const result = scenario.kind === 'open'
    ? await openLoop({ url, rate: scenario.rate, durationS: scenario.durationS })
    : await throughputLoop({ generator, url, connections: scenario.connections, durationS: scenario.durationS, method: scenario.method, bodyFile: scenario.body ? ctx.bodyFile : undefined });
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
