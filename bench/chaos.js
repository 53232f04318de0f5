// The chaos bench (issue 3): tandem in front of a cluster of four endpoints
// of which one is dead (a port nothing listens on), one answers 503 to 30% of
// requests, one takes 200 ms and one is healthy, under closed-loop GET load.
// It reports what the client saw (2xx share, p50/p99) and what tandem did
// (retries, ejections, breaker, tries per endpoint, traffic to the dead
// endpoint once it was out of rotation). Second part: what the resilience
// machinery costs on a healthy cluster, all on vs all off, interleaved.
// Balancing rows (lib/chaos-balancing.js): p50/p99 per policy with one
// endpoint 150 ms slower, and the 250 ms health-check cascade with
// panicThreshold off and on.
//
//   node bench/chaos.js [--duration 20] [--connections 50] [--max-ejection-percent 50]
//                       [--rounds 5] [--overhead-duration 5] [--budget-duration 10]
//                       [--latency-duration 10] [--latency-warmup 10] [--latency-connections 20,50]
//                       [--panic-thresholds 0,25,50] [--cascade-hogs 4]
//                       [--part all|both|chaos,overhead,budget,latency,cascade]
// Writes bench/results/chaos.{json,md}. Run through npm (`npm run bench:chaos`).
import { parseArgs } from 'node:util';
import os from 'node:os';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPinned, stop, tasksetAvailable } from './lib/processes.js';
import { PROXY_CPU, LOAD_CPU } from './lib/peers.js';
import { freePort, waitFor200 } from './lib/net.js';
import { closedLoop } from './lib/load.js';
import { prepare, teardown, measure } from './lib/setup.js';
import { summarize, median, machine, writeResults } from './lib/report.js';
import { chaosConfig, healthyConfig, retryBudgetConfig, writeValidated, tandemCli } from './lib/chaos-config.js';
import { latencyRun, latencyMarkdown, cascadeRun, cascadeMarkdown } from './lib/chaos-balancing.js';
import { readMetrics, readClusters, startSampler, sumOf, byLabel } from './lib/admin-sampler.js';

const { values: opts } = parseArgs({
  options: {
    duration: { type: 'string', default: '20' },
    connections: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '5' },
    'max-ejection-percent': { type: 'string', default: '50' },
    'overhead-duration': { type: 'string', default: '5' },
    'budget-duration': { type: 'string', default: '10' },
    'latency-duration': { type: 'string', default: '10' },
    'latency-warmup': { type: 'string', default: '10' },
    'latency-connections': { type: 'string', default: '20,50' },
    'panic-thresholds': { type: 'string', default: '0,25,50' },
    'cascade-hogs': { type: 'string', default: '4' },
    part: { type: 'string', default: 'all' },
  },
});

const TARGET_SUCCESS = 0.999;
const TARGET_THROUGHPUT_COST = 0.05;
const resultsDir = new URL('./results/', import.meta.url);
const chaosUpstreamJs = fileURLToPath(new URL('./chaos-upstream.js', import.meta.url));
const LIVE = [
  { role: 'flaky', spec: 'flaky:0.3', what: '503 to 30% of requests' },
  { role: 'slow', spec: 'slow:200', what: 'answers after 200 ms' },
  { role: 'healthy', spec: 'healthy', what: 'answers at once' },
];

async function startChaosUpstream(specs = LIVE.map((e) => e.spec)) {
  const tracked = startPinned(LOAD_CPU, process.execPath, [chaosUpstreamJs, ...specs]);
  const deadline = Date.now() + 10_000;
  while (!tracked.stdout.includes('\n')) {
    if (tracked.exited || Date.now() > deadline) throw new Error(`chaos upstream did not start: ${tracked.stderr}`);
    await sleep(20);
  }
  const { ports, statsPort } = JSON.parse(tracked.stdout);
  const stats = async () => (await fetch(`http://127.0.0.1:${statsPort}/`)).json();
  return { tracked, ports, stats };
}

/**
 * tandem on `configPath`, pinned to the proxy CPU. The CLI file is executed
 * itself, so its shebang's Node flags apply as they do for users; the
 * harness's own Node comes first on PATH so that shebang finds the same one.
 */
async function startTandemOn(configPath, { listenPort, adminPort, probePath }) {
  if (!existsSync(tandemCli)) throw new Error('dist/cli.js is missing (npm run build)');
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };
  const tracked = startPinned(PROXY_CPU, tandemCli, ['--config', configPath], { env });
  const admin = `http://127.0.0.1:${adminPort}`;
  try {
    await waitFor200(`${admin}/ready`, tracked);
    if (probePath) await waitFor200(`http://127.0.0.1:${listenPort}${probePath}`, tracked);
  } catch (err) {
    await stop(tracked);
    throw err;
  }
  return { tracked, pid: tracked.child.pid, origin: `http://127.0.0.1:${listenPort}`, admin };
}

const delta = (after, before) => after - before;
const endpointOf = (clusters, port) => clusters?.[0]?.endpoints?.find((e) => e.port === port);
const isOut = (e) => e !== undefined && (e.ejected === true || e.healthy === false);

/** When each endpoint's (healthy, ejected) and the breaker changed, from the samples. */
function transitions(samples, endpoints) {
  const out = [];
  const last = new Map();
  for (const s of samples) {
    if (!s.clusters) continue;
    const note = (key, state) => {
      if (last.get(key) === state) return;
      last.set(key, state);
      out.push({ t: s.t, what: key, state });
    };
    note('breaker', s.clusters[0]?.breaker ?? 'unknown');
    for (const e of endpoints) {
      const view = endpointOf(s.clusters, e.port);
      if (view) note(e.role, `${view.healthy ? 'healthy' : 'unhealthy'}${view.ejected ? ', ejected' : ''}`);
    }
  }
  return out;
}

function readAccessLog(path) {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).flatMap((line) => {
    try {
      return [JSON.parse(line)];
    } catch {
      return [];
    }
  });
}

/**
 * Tries that reached no endpoint: `tandem_upstream_requests_total{code="502"}`
 * (connection refused or reset) minus the requests whose client went away
 * (`tandem_requests_total{code="499"}`), since tandem records the try it
 * cancels for a departed client as a 502 too. In this cluster nothing else
 * ends a try as 502 (the flaky endpoint's failures are 503, per-try
 * timeouts 504), so this counts the tries sent to the dead port.
 */
function refusedTries(samples) {
  return sumOf(samples, 'tandem_upstream_requests_total', { cluster: 'chaos', code: '502' }) - sumOf(samples, 'tandem_requests_total', { code: '499' });
}

/**
 * Tries sent to the dead endpoint, and how many came after it first left
 * rotation: the refused-try count is sampled every 100 ms next to /clusters,
 * and its value at the first sample showing the endpoint ejected (or
 * unhealthy) splits the tries into before and after. The split leans
 * towards "before": tries made between the ejection and the sample that saw
 * it count as before, and a working ejection sends none there anyway.
 */
function deadEndpointTries(samples, base, final, deadPort) {
  const at = (s) => refusedTries(s.samples) - base;
  const ok = samples.filter((s) => s.clusters);
  const firstEjected = ok.find((s) => endpointOf(s.clusters, deadPort)?.ejected === true);
  const firstOut = ok.find((s) => isOut(endpointOf(s.clusters, deadPort)));
  const firstUnhealthy = ok.find((s) => endpointOf(s.clusters, deadPort)?.healthy === false);
  const total = final - base;
  return {
    tries: total,
    firstEjectedMs: firstEjected?.t ?? null,
    firstUnhealthyMs: firstUnhealthy?.t ?? null,
    triesBeforeFirstEjection: firstEjected ? at(firstEjected) : null,
    triesAfterFirstEjection: firstEjected ? total - at(firstEjected) : null,
    triesAfterFirstOut: firstOut ? total - at(firstOut) : null,
    firstEjectedAt: firstEjected?.at ?? null,
    // samples in which the dead endpoint was back in rotation after having left it
    samplesBackInRotation: firstOut ? ok.filter((s) => s.at > firstOut.at && !isOut(endpointOf(s.clusters, deadPort))).length : null,
  };
}

async function chaosRun(ctx, { durationS, connections, maxEjectionPercent }) {
  const upstream = await startChaosUpstream();
  const deadPort = await freePort();
  const endpoints = [
    { role: 'dead', port: deadPort, what: 'nothing listens: connection refused' },
    ...LIVE.map((e, i) => ({ ...e, port: upstream.ports[i] })),
  ];
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  const config = chaosConfig({ dir: ctx.dir, listenPort, adminPort, endpointPorts: endpoints.map((e) => e.port), maxEjectionPercent });
  const configPath = writeValidated(ctx.dir, 'chaos', config);
  const tandem = await startTandemOn(configPath, { listenPort, adminPort });
  // the detector wired into the request path, not merely compiled
  const resilienceBuilt = readFileSync(join(dirname(tandemCli), 'snapshot.js'), 'utf8').includes('OutlierDetector');

  const stats0 = await upstream.stats();
  const metrics0 = await readMetrics(tandem.admin);
  const sampler = startSampler(tandem.admin, { periodMs: 100 });
  const load = await closedLoop({ url: `${tandem.origin}/chaos`, connections, durationS });
  await sleep(600); // the access log flushes every 250 ms
  const samples = await sampler.stop();
  const stats1 = await upstream.stats();
  const metrics1 = await readMetrics(tandem.admin);
  const clustersEnd = await readClusters(tandem.admin);
  const log = readAccessLog(config.accessLog.path);
  await stop(tandem.tracked);
  await stop(upstream.tracked);

  const counter = (name, where) => delta(sumOf(metrics1, name, where), sumOf(metrics0, name, where));
  const codes = (name) => {
    const [after, before] = [byLabel(metrics1, name, 'code'), byLabel(metrics0, name, 'code')];
    return Object.fromEntries(Object.entries(after).map(([code, n]) => [code, n - (before[code] ?? 0)]));
  };
  const dead = deadEndpointTries(samples, refusedTries(metrics0), refusedTries(metrics1), deadPort);
  const attempts = counter('tandem_upstream_requests_total', { cluster: 'chaos' });
  const breakerSeries = samples.filter((s) => s.samples).map((s) => sumOf(s.samples, 'tandem_circuit_breaker_open', { cluster: 'chaos' }));
  const onPort = (entry, port) => typeof entry.endpoint === 'string' && entry.endpoint.endsWith(`:${port}`);

  const perEndpoint = endpoints.map((e) => {
    const live = e.role !== 'dead';
    const [before, after] = [stats0[e.spec], stats1[e.spec]];
    const view = endpointOf(clustersEnd, e.port);
    return {
      role: e.role,
      what: e.what,
      endpoint: `127.0.0.1:${e.port}`,
      // live endpoints: what the process received; dead: refused tries
      tries: live ? after.requests - before.requests : dead.tries,
      answered2xx: live ? after.ok - before.ok : 0,
      answered503: live ? after.unavailable - before.unavailable : 0,
      abandonedByTandem: live ? after.aborted - before.aborted : 0,
      healthChecks: live ? after.healthChecks - before.healthChecks : null,
      lastTryInAccessLog: log.filter((entry) => onPort(entry, e.port)).length,
      endState: view ? { healthy: view.healthy, ejected: view.ejected } : null,
    };
  });
  const liveTries = perEndpoint.filter((e) => e.role !== 'dead').reduce((n, e) => n + e.tries, 0);
  const flags = {};
  for (const entry of log) for (const f of entry.flags ?? []) flags[f] = (flags[f] ?? 0) + 1;
  const deadLinesAfter = dead.firstEjectedAt === null ? null
    : log.filter((entry) => onPort(entry, deadPort) && Date.parse(entry.time) > dead.firstEjectedAt).length;

  return {
    resilienceBuilt,
    config,
    client: {
      durationS,
      connections,
      ...load,
    },
    tandem: {
      responsesByCode: codes('tandem_requests_total'),
      triesByCode: codes('tandem_upstream_requests_total'),
      tries: attempts,
      retries: counter('tandem_upstream_retries_total', { cluster: 'chaos' }),
      outlierEjections: counter('tandem_outlier_ejections_total', { cluster: 'chaos' }),
      breakerOpenAtEnd: sumOf(metrics1, 'tandem_circuit_breaker_open', { cluster: 'chaos' }),
      breakerOpenSamples: breakerSeries.filter((v) => v > 0).length,
      breakerSamples: breakerSeries.length,
      breakerRejections: byLabel(metrics1, 'tandem_circuit_breaker_rejections_total', 'reason'),
      accessLogLines: log.length,
      accessLogFlags: flags,
    },
    perEndpoint,
    deadEndpoint: {
      ...dead,
      // an upper bound: every try tandem counted minus what the live processes
      // received also counts tries cut by the per-try timeout before a live one read them
      triesByDifference: attempts - liveTries,
      accessLogLinesAfterFirstEjection: deadLinesAfter,
    },
    timeline: transitions(samples, endpoints),
    samplerErrors: samples.filter((s) => s.error).length,
  };
}

async function overheadRun(ctx, { durationS, rounds }) {
  const variants = [];
  for (const resilient of [true, false]) {
    const tag = resilient ? 'resilience-on' : 'resilience-off';
    const [listenPort, adminPort] = [await freePort(), await freePort()];
    const config = healthyConfig({ dir: ctx.dir, tag, listenPort, adminPort, endpointPorts: ctx.upstreamPorts, resilient });
    const proxy = await startTandemOn(writeValidated(ctx.dir, tag, config), { listenPort, adminPort, probePath: '/small' });
    variants.push({ tag, resilient, proxy, runs: [] });
  }
  const scenario = { name: 'small-get', kind: 'closed', path: '/small', connections: 50, durationS };
  for (const v of variants) await closedLoop({ url: `${v.proxy.origin}/small`, connections: 50, durationS: 1 });
  for (let round = 1; round <= rounds; round += 1) {
    // alternate the order so neither variant always runs first
    const order = round % 2 ? variants : [...variants].reverse();
    for (const v of order) {
      const r = await measure(v.proxy, scenario, ctx);
      v.runs.push(r);
      console.log(`overhead round ${round} ${v.tag}: ${r.rps.toFixed(0)} req/s, ${r.cpuUsPerReq?.toFixed(1)} µs CPU/req, ${r.failures} failures`);
    }
  }
  for (const v of variants) await stop(v.proxy.tracked);
  const [on, off] = variants.map((v) => ({ ...summarize(v.runs), raw: v.runs }));
  // Each round's on/off pair ran back to back under the same conditions on a
  // shared machine: the median of the per-round ratios is steadier than the
  // ratio of the medians, which is also given.
  const ratios = (key) => on.raw.map((r, i) => r[key] / off.raw[i][key]);
  const paired = (key) => median(ratios(key));
  return {
    durationS,
    rounds,
    on,
    off,
    throughputCost: 1 - paired('rps'),
    throughputRatios: ratios('rps'),
    throughputCostOfMedians: 1 - on.rps / off.rps,
    cpuPerReqRatio: paired('cpuUsPerReq'),
    cpuPerReqRatioOfMedians: on.cpuUsPerReq / off.cpuUsPerReq,
    on_config: 'retries (2, on connect-failure/reset/5xx), error-rate breaker 50%, outlier detection (5 consecutive), health checks every 1 s',
    off_config: 'retries: { attempts: 0 }; no errorThresholdPercentage, outlierDetection or healthCheck',
  };
}

/**
 * The retry budget at full load: one endpoint answering 503 to half its
 * requests, retries on 5xx up to 3, with the default budget (20% of the
 * requests in flight, at least 3) and, for comparison, one that never binds.
 * Reports retries / upstream requests, the share the budget is meant to cap.
 */
async function retryBudgetRun(ctx, { durationS, connections }) {
  const upstream = await startChaosUpstream(['flaky:0.5']);
  const variants = [
    { label: 'default budget (20%, min 3)', retryBudget: undefined },
    { label: 'no budget (100%)', retryBudget: { percent: 100, minConcurrency: 1024 } },
  ];
  const rows = [];
  try {
    for (const [i, v] of variants.entries()) {
      const [listenPort, adminPort] = [await freePort(), await freePort()];
      const tag = `budget-${i}`;
      const config = retryBudgetConfig({ dir: ctx.dir, tag, listenPort, adminPort, endpointPorts: upstream.ports, retryBudget: v.retryBudget });
      const tandem = await startTandemOn(writeValidated(ctx.dir, tag, config), { listenPort, adminPort });
      const before = await readMetrics(tandem.admin);
      const load = await closedLoop({ url: `${tandem.origin}/budget`, connections, durationS });
      const after = await readMetrics(tandem.admin);
      await stop(tandem.tracked);
      const counter = (name, where) => delta(sumOf(after, name, where), sumOf(before, name, where));
      const retries = counter('tandem_upstream_retries_total', { cluster: 'budget' });
      const tries = counter('tandem_upstream_requests_total', { cluster: 'budget' });
      rows.push({
        label: v.label,
        requests: load.requests,
        successRate: load.successRate,
        rps: load.rps,
        tries,
        retries,
        retryShare: tries ? retries / tries : null,
        skippedByBudget: counter('tandem_circuit_breaker_rejections_total', { cluster: 'budget', reason: 'retry_budget' }),
      });
    }
  } finally {
    await stop(upstream.tracked);
  }
  return { durationS, connections, rows };
}

function retryBudgetMarkdown(b) {
  return [
    '### Retry budget: one endpoint failing 50%, full load', '',
    `${b.durationS} s of GETs per row, closed loop, ${b.connections} connections; retries 3 on 5xx, backoff 5–50 ms, maxRetries 1024 (out of the way).`, '',
    '| budget | requests | 2xx share | req/s | upstream requests | retries | retry share of upstream requests | retries skipped by the budget |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...b.rows.map((r) => `| ${r.label} | ${r.requests} | ${pct(r.successRate, 1)} | ${num(r.rps)} | ${r.tries} | ${r.retries} | ${pct(r.retryShare, 1)} | ${r.skippedByBudget} |`),
    '',
  ];
}

const pct = (x, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : `${(x * 100).toFixed(digits)}%`);
const num = (x, digits = 0) => (x === null || x === undefined || !Number.isFinite(Number(x)) ? '—' : Number(x).toFixed(digits));

function chaosMarkdown(c) {
  const t = c.tandem;
  const d = c.deadEndpoint;
  const lines = [
    '### Chaos: dead, flaky (30% 503), slow (200 ms) and healthy endpoints', '',
    `${c.client.durationS} s of GETs, closed loop, ${c.client.connections} connections; least_request; ` +
      'retries 3 on connect-failure/reset/5xx, per-try timeout 150 ms, backoff 5–50 ms, route timeout 2 s; ' +
      `outlier detection 3 consecutive 5xx, 10 s, max ${c.config.clusters[0].outlierDetection.maxEjectionPercent}%; ` +
      'health checks /healthz every 1 s (timeout 500 ms, 2 to fail, 1 to recover); ' +
      'error-rate breaker at 50%, maxRetries 256.', '',
    `**Client**: ${c.client.requests} requests, ${c.client.failures} not 2xx, success ${pct(c.client.successRate, 3)} ` +
      `(target ${pct(TARGET_SUCCESS, 1)}: ${c.client.successRate >= TARGET_SUCCESS ? 'met' : 'NOT met'}), ` +
      `${num(c.client.rps)} req/s, p50 ${num(c.client.p50Ms, 1)} ms, p99 ${num(c.client.p99Ms, 1)} ms.`, '',
    `**tandem**: ${t.tries} tries for ${c.client.requests} requests, ${t.retries} retries, ${t.outlierEjections} outlier ejections, ` +
      `breaker open in ${t.breakerOpenSamples} of ${t.breakerSamples} samples (${t.breakerOpenAtEnd ? 'open' : 'closed'} at the end), ` +
      `breaker rejections ${JSON.stringify(t.breakerRejections)}; responses by status ${JSON.stringify(t.responsesByCode)}; ` +
      `tries by status ${JSON.stringify(t.triesByCode)}; access-log flags ${JSON.stringify(t.accessLogFlags)}.`, '',
    '| endpoint | behaviour | tries | 2xx | 503 | cut by per-try timeout | health checks | last try in access log | at the end |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...c.perEndpoint.map((e) => `| ${e.role} | ${e.what} | ${e.tries} | ${e.answered2xx} | ${e.answered503} | ${e.abandonedByTandem} | ${e.healthChecks ?? '—'} | ${e.lastTryInAccessLog} | ${e.endState ? `${e.endState.healthy ? 'healthy' : 'unhealthy'}${e.endState.ejected ? ', ejected' : ''}` : '—'} |`),
    '',
    `**Dead endpoint**: ${d.tries} tries (refused tries; upper bound from all tries minus what the live endpoints received: ${d.triesByDifference}); ` +
      `first seen ejected at ${d.firstEjectedMs ?? '—'} ms, unhealthy at ${d.firstUnhealthyMs ?? '—'} ms (from the start of the load, 100 ms samples); ` +
      `tries after the first ejection: ${d.triesAfterFirstEjection ?? '— (never ejected)'}; after it first left rotation by either means: ${d.triesAfterFirstOut ?? '—'}; ` +
      `samples back in rotation after that: ${d.samplesBackInRotation ?? '—'}; access-log lines (last try) on it for requests started after the first ejection: ${d.accessLogLinesAfterFirstEjection ?? '—'}.`, '',
    'Timeline (ms from the start of the load):', '',
    ...c.timeline.map((x) => `- ${x.t} ms: ${x.what} → ${x.state}`), '',
  ];
  if (!c.resilienceBuilt) lines.push('Note: the build did not wire outlier detection into the proxy (dist/snapshot.js): ejection and health-check figures are not meaningful.', '');
  return lines;
}

/** A verdict only when every round agrees: on a busy machine single rounds swing by tens of percent. */
function costVerdict(ratios) {
  const [low, high] = [Math.min(...ratios), Math.max(...ratios)];
  if (low >= 1 - TARGET_THROUGHPUT_COST) return 'met in every round';
  if (high < 1 - TARGET_THROUGHPUT_COST) return 'NOT met in any round';
  return `inconclusive, the rounds disagree: on/off from ${num(low, 2)} to ${num(high, 2)}`;
}

function overheadMarkdown(o) {
  const row = (label, s) => `| ${label} | ${num(s.rps)} | ${num(s.p50Ms, 1)} | ${num(s.p99Ms, 1)} | ${num(s.cpuUsPerReq, 1)} | ${s.failures} |`;
  return [
    '### Overhead on a healthy cluster (4 endpoints, small GET, 50 connections)', '',
    `${o.rounds} interleaved rounds of ${o.durationS} s, medians; tandem on CPU 0, load and upstreams on CPU 1.`, '',
    '| tandem | req/s | p50 ms | p99 ms | CPU µs/req | failures |', '| --- | ---: | ---: | ---: | ---: | ---: |',
    row('resilience on', o.on), row('resilience off', o.off), '',
    `Throughput cost (median of the per-round on/off ratios): ${pct(o.throughputCost, 1)} (target at most ${pct(TARGET_THROUGHPUT_COST, 0)}: ${costVerdict(o.throughputRatios)}); ` +
      `of the medians: ${pct(o.throughputCostOfMedians, 1)}. CPU per request on/off: ${num(o.cpuPerReqRatio, 3)} (of the medians: ${num(o.cpuPerReqRatioOfMedians, 3)}).`, '',
    `Per round, req/s on/off: ${o.on.raw.map((r, i) => `${num(r.rps)}/${num(o.off.raw[i].rps)}`).join(', ')}.`, '',
    `On: ${o.on_config}. Off: ${o.off_config}.`, '',
  ];
}

/** `all`, `both` (chaos and overhead, as before the balancing rows) or a comma-separated list of parts. */
function partsToRun(part) {
  if (part === 'all') return new Set(['chaos', 'overhead', 'budget', 'latency', 'cascade']);
  if (part === 'both') return new Set(['chaos', 'overhead']);
  return new Set(part.split(','));
}

async function main() {
  const parts = partsToRun(opts.part);
  const tools = { startChaosUpstream, startTandemOn };
  const notes = [];
  if (!tasksetAvailable()) notes.push('taskset not found: processes were not pinned');
  // other work on the pinned CPUs moves throughput from run to run; CPU µs/req moves least
  notes.push(`load average at the start: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')} on ${os.cpus().length} CPUs`);
  const ctx = await prepare();
  const out = {};
  try {
    if (parts.has('chaos')) {
      out.chaos = await chaosRun(ctx, { durationS: Number(opts.duration), connections: Number(opts.connections), maxEjectionPercent: Number(opts['max-ejection-percent']) });
      console.log(chaosMarkdown(out.chaos).join('\n'));
    }
    if (parts.has('overhead')) {
      out.overhead = await overheadRun(ctx, { durationS: Number(opts['overhead-duration']), rounds: Number(opts.rounds) });
      console.log(overheadMarkdown(out.overhead).join('\n'));
    }
    if (parts.has('budget')) {
      out.retryBudget = await retryBudgetRun(ctx, { durationS: Number(opts['budget-duration']), connections: Number(opts.connections) });
      console.log(retryBudgetMarkdown(out.retryBudget).join('\n'));
    }
    if (parts.has('latency')) {
      const latency = {
        durationS: Number(opts['latency-duration']),
        warmupS: Number(opts['latency-warmup']),
        connectionsList: opts['latency-connections'].split(',').map(Number),
      };
      out.latency = await latencyRun(ctx, latency, tools);
      console.log(latencyMarkdown(out.latency).join('\n'));
    }
    if (parts.has('cascade')) {
      const cascade = {
        durationS: Number(opts.duration),
        connections: Number(opts.connections),
        panicThresholds: opts['panic-thresholds'].split(',').map(Number),
        hogs: Number(opts['cascade-hogs']),
      };
      out.cascade = await cascadeRun(ctx, cascade, tools);
      console.log(cascadeMarkdown(out.cascade).join('\n'));
    }
  } finally {
    await teardown(ctx);
  }
  const info = machine();
  const md = [
    '## tandem chaos benchmark', '',
    `${info.date.slice(0, 10)} · Node ${info.node} · ${info.cpuModel} (${info.cpus} CPUs)`, '',
    ...(out.chaos ? chaosMarkdown(out.chaos) : []),
    ...(out.overhead ? overheadMarkdown(out.overhead) : []),
    ...(out.retryBudget ? retryBudgetMarkdown(out.retryBudget) : []),
    ...(out.latency ? latencyMarkdown(out.latency) : []),
    ...(out.cascade ? cascadeMarkdown(out.cascade) : []),
    ...notes.map((n) => `- ${n}`),
  ].join('\n');
  writeResults(resultsDir, 'chaos', { ...info, ...out, notes }, `${md}\n`);
}

main().catch(async (err) => {
  console.error(err);
  await teardown();
  process.exitCode = 1;
});
