// The chaos bench's balancing rows (issue 11):
// - latency: three endpoints, one 150 ms slower than the other two, behind
//   round_robin, least_request and peak_ewma in turn, in the same run;
// - cascade: the chaos cluster with the 250 ms health-check timeout that
//   once took every endpoint out, with panicThreshold off and on.
// chaos.js runs them (`--part latency,cascade`) and hands in its helpers:
// `startChaosUpstream(specs)` and `startTandemOn(configPath, ports)`.
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync, existsSync } from 'node:fs';
import { startPinned, stop } from './processes.js';
import { PROXY_CPU } from './peers.js';
import { freePort } from './net.js';
import { closedLoop } from './load.js';
import { cascadeConfig, latencyConfig, writeValidated } from './chaos-config.js';
import { readMetrics, startSampler, byLabel } from './admin-sampler.js';
import { median } from './report.js';

export const LATENCY_POLICIES = ['round_robin', 'least_request', 'peak_ewma'];
/** The other two answer in FAST_MS: an application's own latency, so tandem's queueing is not all there is to compare. */
const FAST_MS = 10;
const SLOWER_BY_MS = 150;
const LATENCY_ENDPOINTS = [
  { role: 'fast-a', spec: `slow:${FAST_MS}#a` },
  { role: 'fast-b', spec: `slow:${FAST_MS}#b` },
  { role: 'slow', spec: `slow:${FAST_MS + SLOWER_BY_MS}` },
];
export const TARGET_P99_RATIO = 0.5;

const num = (x, digits = 0) => (x === null || x === undefined || !Number.isFinite(Number(x)) ? '—' : Number(x).toFixed(digits));
const pct = (x, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : `${(x * 100).toFixed(digits)}%`);

const codesDelta = (after, before, name) => {
  const [a, b] = [byLabel(after, name, 'code'), byLabel(before, name, 'code')];
  return Object.fromEntries(Object.entries(a).map(([code, n]) => [code, n - (b[code] ?? 0)]));
};

/**
 * At each client concurrency, one policy after the other over the same
 * three upstream endpoints, each with a fresh tandem.
 */
export async function latencyRun(ctx, { durationS, warmupS, connectionsList }, tools) {
  const upstream = await tools.startChaosUpstream(LATENCY_ENDPOINTS.map((e) => e.spec));
  const levels = [];
  try {
    for (const connections of connectionsList) {
      const rows = [];
      for (const policy of LATENCY_POLICIES) rows.push(await latencyRow(ctx, upstream, { policy, connections, durationS, warmupS }, tools));
      const p99 = (policy) => rows.find((r) => r.policy === policy).p99Ms;
      levels.push({ connections, rows, p99Ratio: p99('peak_ewma') / p99('round_robin') });
    }
  } finally {
    await stop(upstream.tracked);
  }
  return { durationS, warmupS, fastMs: FAST_MS, slowerByMs: SLOWER_BY_MS, levels };
}

async function latencyRow(ctx, upstream, { policy, connections, durationS, warmupS }, { startTandemOn }) {
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  const tag = `latency-${policy}-${connections}`;
  const config = latencyConfig({ dir: ctx.dir, tag, listenPort, adminPort, endpointPorts: upstream.ports, loadBalancing: policy });
  const tandem = await startTandemOn(writeValidated(ctx.dir, tag, config), { listenPort, adminPort });
  try {
    // The first tries through a cold tandem take far longer than the rest,
    // and peak_ewma remembers such a peak with a 10 s time constant: the
    // warm-up at the same load lets it fade, so the row shows the steady
    // state (every policy gets the same warm-up).
    await closedLoop({ url: `${tandem.origin}/latency`, connections, durationS: warmupS });
    const before = await upstream.stats();
    const sampler = startSampler(tandem.admin, { periodMs: 500 });
    const load = await closedLoop({ url: `${tandem.origin}/latency`, connections, durationS });
    const samples = (await sampler.stop()).filter((sample) => sample.clusters);
    const after = await upstream.stats();
    const tries = LATENCY_ENDPOINTS.map((e) => after[e.spec].requests - before[e.spec].requests);
    const total = tries.reduce((sum, n) => sum + n, 0);
    const row = {
      policy,
      ...load,
      tries: Object.fromEntries(LATENCY_ENDPOINTS.map((e, i) => [e.role, tries[i]])),
      slowShare: total ? tries[2] / total : null,
      estimates: policy === 'peak_ewma' ? medianEstimates(samples, upstream.ports) : null,
    };
    console.log(`latency ${connections} connections, ${policy}: p50 ${load.p50Ms} ms, p99 ${load.p99Ms} ms, ${load.rps.toFixed(0)} req/s, slow endpoint ${pct(row.slowShare)} of tries`);
    return row;
  } finally {
    await stop(tandem.tracked);
  }
}

export function latencyMarkdown(l) {
  return [
    `### Latency: one endpoint ${l.slowerByMs} ms slower`, '',
    `Three endpoints: two answer in ${l.fastMs} ms, one in ${l.fastMs + l.slowerByMs} ms. Per policy and client concurrency, a fresh tandem, ` +
      `${l.warmupS} s of warm-up at the same load, then ${l.durationS} s of GETs measured; closed loop, no retries; all in the same run over the same upstream process.`, '',
    '| connections | policy | req/s | p50 ms | p99 ms | not 2xx | tries to the slow endpoint |', '| ---: | --- | ---: | ---: | ---: | ---: | ---: |',
    ...l.levels.flatMap((level) => level.rows.map((r) => `| ${level.connections} | ${r.policy} | ${num(r.rps)} | ${num(r.p50Ms, 1)} | ${num(r.p99Ms, 1)} | ${r.failures} | ${r.tries.slow} (${pct(r.slowShare)}) |`)),
    '',
    ...l.levels.map((level) => {
      const est = level.rows.find((r) => r.policy === 'peak_ewma').estimates;
      return `- ${level.connections} connections: peak_ewma's p99 / round_robin's ${num(level.p99Ratio, 3)} (target at most ${TARGET_P99_RATIO}: ${level.p99Ratio <= TARGET_P99_RATIO ? 'met' : 'NOT met'}); ` +
        `its latency estimates (median of 500 ms samples): fast ${num(est['fast-a'], 1)} and ${num(est['fast-b'], 1)} ms, slow ${num(est.slow, 1)} ms.`;
    }),
    '',
  ];
}

/** peak_ewma's latency estimates (ms), the median over the samples, per endpoint role. */
function medianEstimates(samples, ports) {
  return Object.fromEntries(LATENCY_ENDPOINTS.map((e, i) => {
    const values = samples.map((sample) => sample.clusters[0].endpoints.find((view) => view.port === ports[i])?.latencyEstimateMs).filter(Number.isFinite);
    return [e.role, median(values)];
  }));
}

function readAccessLogFlags(path) {
  if (!existsSync(path)) return {};
  const flags = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line === '') continue;
    try {
      for (const f of JSON.parse(line).flags ?? []) flags[f] = (flags[f] ?? 0) + 1;
    } catch {
      // a torn last line: the others still count
    }
  }
  return flags;
}

/** One variant of the cascade: the chaos cluster with the 250 ms health-check timeout and `panicThreshold`. */
async function cascadeVariant(ctx, { durationS, connections, panicThreshold, hogs }, { startChaosUpstream, startTandemOn }) {
  const upstream = await startChaosUpstream();
  const deadPort = await freePort();
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  const tag = `cascade-panic-${panicThreshold}`;
  const config = cascadeConfig({ dir: ctx.dir, tag, listenPort, adminPort, endpointPorts: [deadPort, ...upstream.ports], panicThreshold });
  const tandem = await startTandemOn(writeValidated(ctx.dir, tag, config), { listenPort, adminPort });
  // The starved CPU: busy loops pinned to tandem's CPU take most of its time
  // slices, so health probes and tries are handled late, as on an
  // overcommitted node.
  const hogging = Array.from({ length: hogs }, () => startPinned(PROXY_CPU, process.execPath, ['-e', 'for (;;);']));
  try {
    const metrics0 = await readMetrics(tandem.admin);
    const sampler = startSampler(tandem.admin, { periodMs: 100 });
    const load = await closedLoop({ url: `${tandem.origin}/chaos`, connections, durationS });
    await sleep(600); // the access log flushes every 250 ms
    const samples = (await sampler.stop()).filter((s) => s.clusters);
    const metrics1 = await readMetrics(tandem.admin);
    const inRotation = samples.map((s) => s.clusters[0].endpoints.filter((e) => e.healthy && !e.ejected).length);
    return {
      panicThreshold,
      ...load,
      responsesByCode: codesDelta(metrics1, metrics0, 'tandem_requests_total'),
      accessLogFlags: readAccessLogFlags(config.accessLog.path),
      samples: samples.length,
      samplesWithNoneInRotation: inRotation.filter((n) => n === 0).length,
      fewestInRotation: inRotation.length ? Math.min(...inRotation) : null,
      samplesInPanic: samples.filter((s) => s.clusters[0].panic === true).length,
    };
  } finally {
    await Promise.all(hogging.map((hog) => stop(hog)));
    await stop(tandem.tracked);
    await stop(upstream.tracked);
  }
}

export async function cascadeRun(ctx, { durationS, connections, panicThresholds, hogs }, tools) {
  const variants = [];
  for (const threshold of panicThresholds) {
    const v = await cascadeVariant(ctx, { durationS, connections, panicThreshold: threshold, hogs }, tools);
    console.log(`cascade panicThreshold ${threshold}: success ${pct(v.successRate, 3)}, UH ${v.accessLogFlags.UH ?? 0}, ` +
      `fewest endpoints in rotation ${v.fewestInRotation}, samples in panic ${v.samplesInPanic}/${v.samples}`);
    variants.push(v);
  }
  return { durationS, connections, hogs, variants };
}

export function cascadeMarkdown(c) {
  return [
    '### Cascade: health-check timeout 250 ms, starved CPU, panicThreshold off and on', '',
    `The chaos cluster above (dead, flaky, slow 200 ms, healthy; same retries, outlier detection and breaker) with the health checks' ` +
      `timeout at 250 ms instead of 500 ms, the setting that on a starved CPU once took every endpoint out; the CPU is starved on purpose ` +
      `by ${c.hogs} busy loop(s) pinned to tandem's CPU. ${c.durationS} s, ${c.connections} connections per variant.`, '',
    '| panicThreshold | requests | success | p50 ms | p99 ms | 503 no_healthy_upstream (UH) | fewest endpoints in rotation | samples with none | samples in panic |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...c.variants.map((v) => `| ${v.panicThreshold} | ${v.requests} | ${pct(v.successRate, 3)} | ${num(v.p50Ms, 1)} | ${num(v.p99Ms, 1)} | ${v.accessLogFlags.UH ?? 0} | ${v.fewestInRotation ?? '—'} of 4 | ${v.samplesWithNoneInRotation} of ${v.samples} | ${v.samplesInPanic} |`),
    '',
    ...c.variants.map((v) => `- panicThreshold ${v.panicThreshold}: responses by status ${JSON.stringify(v.responsesByCode)}; access-log flags ${JSON.stringify(v.accessLogFlags)}.`),
    '',
  ];
}
