// tandem's benchmark: the same upstream reached directly and through tandem,
// http-proxy, fastify's reply-from, a bare undici pass-through (with and
// without tandem's flags) and nginx, interleaved round by round (A B C D E,
// B C D E A, ...) and reduced to medians; then the HTTP/2 scenarios (h2c GET,
// gRPC unary) the same way against their own peers (lib/h2-peers.js); then
// start-up and memory at rest, and instructions per request counted by
// callgrind. Tracing's cost rides along: tandem with tracing on (and with its
// collector down) in the HTTP/1.1 rounds, a 60 s collector-down run for
// memory, and tracing's instruction count (lib/tracing-rows.js; full run only).
//
//   node bench/run.js            full run (about 30 minutes), writes bench/results/latest.{json,md}
//   node bench/run.js --ci       short run; exits 1 only if tandem is slower than http-proxy or over 2x bare undici's instructions
//   node bench/run.js --heap     tandem's req/s and peak RSS for several --max-semi-space-size values
//   node bench/run.js --profile  tandem under small-GET load with --cpu-prof; prints the top self-time functions
// Options: --duration S, --rounds N, --peers a,b,c, --protocols http1,workers,h2c,grpc, --skip-startup, --skip-instructions,
// --results NAME (write bench/results/NAME.{json,md} instead of latest / latest-ci)
import { parseArgs } from 'node:util';
import { PEERS, PROXY_CPU } from './lib/peers.js';
import { H2_PEERS } from './lib/h2-peers.js';
import { tasksetAvailable, stop } from './lib/processes.js';
import { peakRssBytes, cpuTicks } from './lib/proc-stats.js';
import { headToHead } from './lib/head-to-head.js';
import { wrkAvailable, h2loadAvailable } from './lib/load.js';
import { prepare, prepareH2, teardown, measure, inTurn, scenarios as scenarioList } from './lib/setup.js';
import { summarize, machine, scenarioTable, ratios, ratioTable, targetsTable, h2TargetsTable, headToHeadTable, startupTable, instructionsTable, markdown, writeResults } from './lib/report.js';
import { startupAndRest } from './lib/startup.js';
import { instructionsPerRequest, valgrindAvailable } from './lib/instructions.js';
import { TRACING_PEERS, collectorDownRss, tracingInstructions, tracingRatios, tracingSections } from './lib/tracing-rows.js';
import { WORKERS, WORKER_PEERS } from './lib/workers-rows.js';

const { values: opts } = parseArgs({
  options: {
    ci: { type: 'boolean', default: false },
    heap: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    duration: { type: 'string' },
    rounds: { type: 'string' },
    peers: { type: 'string' },
    protocols: { type: 'string' },
    'skip-startup': { type: 'boolean', default: false },
    'skip-instructions': { type: 'boolean', default: false },
    results: { type: 'string' },
  },
});

const resultsDir = new URL('./results/', import.meta.url);
const ALL_PEERS = [...PEERS, ...TRACING_PEERS];

async function startPeers(wanted, ctx, notes, protocol) {
  const running = [];
  const suffix = protocol === 'http1' ? '' : ` (${protocol})`;
  for (const peer of wanted) {
    try {
      running.push({ ...peer, proxy: await peer.start(ctx) });
      console.log(`started ${peer.label}${suffix}`);
    } catch (err) {
      const reason = peer.name === 'tandem' ? `tandem${suffix} failed to start: ${err.message}` : `${peer.label}${suffix} skipped: ${err.message}`;
      notes.push(reason.split('\n')[0].slice(0, 300));
      console.log(reason);
    }
  }
  return running;
}

/** The peers that were started for one protocol's scenarios, stopped after them (the upstream, shared, stays). */
async function stopPeers(running) {
  for (const peer of running) if (!peer.proxy.shared) await stop(peer.proxy.tracked);
}

/**
 * `scenarios` (all of one protocol) against `running`, round by round, in
 * turn; each run's figures go into `raw`, their medians and each proxy's
 * peak RSS after the scenario into `results`.
 */
async function runRounds({ scenarios, running, rounds, ctx, raw, results, notes }) {
  // Warm-up: JIT, connection pools and the upstream's keep-alive sockets. Two seconds: tandem
  // optimizes on its main thread (--no-concurrent-recompilation): a short warm-up leaves more
  // of that compiling inside the first round.
  for (const peer of running) await measure(peer.proxy, { ...scenarios[0], durationS: 2 }, ctx, peer.generator);
  for (const scenario of scenarios) {
    raw[scenario.name] = {};
    for (let round = 1; round <= rounds; round += 1) {
      for (const peer of inTurn(running, round)) {
        if (peer.proxy.tracked.exited || (peer.closedOnly && scenario.kind !== 'closed')) continue;
        try {
          const r = await measure(peer.proxy, scenario, ctx, peer.generator);
          (raw[scenario.name][peer.name] ??= []).push({ round, ...r });
          console.log(`${scenario.name} round ${round} ${peer.name}: ${r.rps.toFixed(0)} req/s, ${r.cpuUsPerReq?.toFixed(1)} µs CPU/req, ${r.failures} failures${r.firstError ? ` (first: ${r.firstError})` : ''}`);
        } catch (err) {
          console.log(`${scenario.name} round ${round} ${peer.name} failed: ${err.message.slice(0, 300)}`);
        }
        if (peer.proxy.tracked.exited) notes.push(`${peer.label} exited (${peer.proxy.tracked.exitCode}) during ${scenario.name}: ${peer.proxy.tracked.stderr.slice(-300)}`);
      }
    }
    results[scenario.name] = {};
    for (const [name, runs] of Object.entries(raw[scenario.name])) {
      const proxy = running.find((p) => p.name === name).proxy;
      results[scenario.name][name] = { ...summarize(runs), peakRss: peakRssBytes(proxy.pid) };
    }
  }
}

// The groups of scenarios in the order they run, each with its own peers (lib/peers.js,
// lib/workers-rows.js, lib/h2-peers.js); `workers` is HTTP/1.1 with tandem on both CPUs.
const PROTOCOLS = ['http1', WORKERS, 'h2c', 'grpc'];
const peersOf = (protocol) => (protocol === 'http1' ? ALL_PEERS : protocol === WORKERS ? WORKER_PEERS : H2_PEERS[protocol]);

async function benchmark() {
  const ci = opts.ci;
  // Many short rounds rather than a few long ones: this VM's speed drifts over seconds, and
  // the ratios pair tandem with each peer round by round (bench/README.md).
  const durationS = Number(opts.duration ?? (ci ? 2 : 3));
  // --ci gates on the median of per-round ratios: nine rounds ride out four slow ones (its
  // ratio read 1.05 to 1.40 over seven runs on this VM, where a build A/B against itself
  // gave per-round ratios from 0.67 to 1.40)
  const rounds = Number(opts.rounds ?? (ci ? 9 : 7));
  const names = opts.peers?.split(',');
  // --ci leaves nginx out, and on HTTP/2 runs tandem and the bare pass-through alone: the pair its h2c row reports on
  const leftOut = (protocol, p) => ci && (p.name === 'nginx' || p.fullOnly || (protocol !== 'http1' && p.name !== 'tandem' && p.name !== 'bare-http2'));
  const wantedFor = (protocol) => peersOf(protocol).filter((p) => (names ? names.includes(p.name) : !leftOut(protocol, p)));
  const protocols = opts.protocols?.split(',') ?? PROTOCOLS;
  const notes = [];
  if (!tasksetAvailable()) notes.push('taskset not found: processes were not pinned, so the proxy may not be the bottleneck');
  if (ci) notes.push('nginx and the tracing rows are left out of --ci runs; its h2c scenario runs tandem and the bare node:http2 pass-through alone');
  if (!wrkAvailable()) notes.push('wrk not found: autocannon drove the throughput runs, and it saturates before the fastest proxies do');
  if (protocols.includes('h2c') && !h2loadAvailable()) notes.push('h2load not found (apt-get install nghttp2-client): no h2c scenario');
  const scenarios = scenarioList({ ci, durationS }).filter((s) => protocols.includes(s.protocol) && (s.client !== 'h2load' || h2loadAvailable()));

  const ctx = await prepare();
  const ticksAtStart = cpuTicks(PROXY_CPU);
  const raw = {};
  const results = {};
  const shown = {};
  let h2h = [];
  let tandemRunning = false;
  let tracingRss = null;
  for (const protocol of PROTOCOLS) {
    const group = scenarios.filter((s) => s.protocol === protocol);
    if (group.length === 0) continue;
    if (protocol === 'h2c' || protocol === 'grpc') await prepareH2(ctx);
    shown[protocol] = wantedFor(protocol);
    const running = await startPeers(shown[protocol], ctx, notes, protocol);
    if (running.length) await runRounds({ scenarios: group, running, rounds, ctx, raw, results, notes });
    if (protocol === 'http1') {
      tandemRunning = running.some((p) => p.name === 'tandem');
      // The full run also pits tandem against its two Node peers at the same time (lib/head-to-head.js).
      const tandemPeer = running.find((p) => p.name === 'tandem' && !p.proxy.tracked.exited);
      const rivals = running.filter((p) => (p.name === 'http-proxy' || p.name === 'bare-undici') && !p.proxy.tracked.exited);
      if (!ci && tandemPeer && rivals.length) h2h = await headToHead({ tandem: tandemPeer, peers: rivals, ctx, rounds, durationS });
      if (!ci) {
        try {
          tracingRss = await collectorDownRss(running);
        } catch (err) {
          notes.push(`the collector-down RSS run failed: ${err.message.slice(0, 300)}`);
        }
      }
    }
    await stopPeers(running);
  }
  const ticksAtEnd = cpuTicks(PROXY_CPU);
  const steal = (ticksAtEnd.steal - ticksAtStart.steal) / Math.max(1, ticksAtEnd.total - ticksAtStart.total);
  notes.push(`the hypervisor took ${(steal * 100).toFixed(1)}% of the proxy CPU's time during the run (steal, /proc/stat)`);
  const directNote = 'the "upstream directly" row measures the upstream process itself (CPU and RSS are its own), on the load CPU';
  notes.push(directNote);
  await teardown(ctx);

  // After the load runs, with every proxy and upstream stopped: the two parts that need the CPU to themselves.
  let startup = null;
  if (!opts['skip-startup']) {
    try {
      startup = await startupAndRest();
    } catch (err) {
      notes.push(`start-up rows failed: ${err.message.slice(0, 300)}`);
    }
  }
  let instructions = null;
  if (!opts['skip-instructions'] && !valgrindAvailable()) notes.push('valgrind not found: no instructions-per-request rows (apt-get install valgrind)');
  else if (!opts['skip-instructions']) {
    try {
      instructions = await instructionsPerRequest();
    } catch (err) {
      notes.push(`instructions per request failed: ${err.message.slice(0, 300)}`);
    }
  }
  let tracingCount = null;
  if (!opts['skip-instructions'] && valgrindAvailable() && !ci && (shown.http1 ?? []).some((p) => TRACING_PEERS.includes(p))) {
    try {
      tracingCount = await tracingInstructions();
    } catch (err) {
      notes.push(`instructions per request with tracing on failed: ${err.message.slice(0, 300)}`);
    }
  }

  const info = machine();
  const settings = `${rounds} interleaved rounds of ${durationS} s, medians; proxy on CPU 0, load and upstream on CPU 1`;
  console.log(`\n${info.date} node ${info.node} ${info.cpuModel}`);
  for (const scenario of scenarios) console.log(`\n${scenario.label}\n${scenarioTable(scenario, results, shown[scenario.protocol])}`);
  const rel = ratios(scenarios, raw);
  console.log(`\nratios: median of the per-round ratios (range)\n${ratioTable(scenarios, rel)}`);
  const h2 = h2TargetsTable(scenarios, results, rel);
  if (h2) console.log(`\nHTTP/2 targets\n${h2}`);
  if (instructions) console.log(`\ninstructions per request (callgrind, small GET)\n${instructionsTable(instructions)}`);
  // the tracing peers run in the HTTP/1.1 rounds only
  const http1 = scenarios.filter((s) => s.protocol === 'http1');
  const tracing = { ratios: tracingRatios(http1, raw), instructions: tracingCount, rss: tracingRss };
  const sections = tracingSections({ scenarios: http1, ...tracing });
  for (const section of sections) console.log(`\n${section.title}\n${section.text}`);
  if (startup) console.log(`\nstart-up and memory at rest\n${startupTable(startup)}`);
  const targets = targetsTable({ results, ratios: rel, instructions, startup });
  if (targets) console.log(`\nissue 13 targets\n${targets}`);
  if (h2h.length) console.log(`\nhead to head (small GET, both on CPU ${PROXY_CPU} at once)\n${headToHeadTable(h2h)}`);
  for (const note of notes) console.log(`note: ${note}`);

  const title = ci ? 'tandem benchmark (--ci)' : 'tandem benchmark';
  const json = { mode: ci ? 'ci' : 'full', ...info, settings, scenarios, results, ratios: rel, headToHead: h2h, startup, instructions, tracing, raw, notes };
  writeResults(resultsDir, opts.results ?? (ci ? 'latest-ci' : 'latest'), json, markdown({ title, info, settings, scenarios, results, raw, peers: shown, headToHead: h2h, startup, instructions, sections, notes }));

  // the gate reads the HTTP/1.1 small GET: a run without it (--protocols) has nothing to gate on
  if (ci && results['small-get']) ciGate(results, rel, instructions, tandemRunning);
  // reported, never gated: one short h2c row does not yet tell a regression from this VM's drift
  if (ci && rel['h2c-get']) console.log(`h2c (report only): tandem/bare node:http2 CPU per request ${rel['h2c-get'].cpuPerReqVsBareHttp2?.toFixed(2) ?? '—'}`);
}

// Gates for broken, not for targets missed: tandem slower than http-proxy (per-round
// throughput ratio), or over twice bare undici's instructions per request (medians of the
// repetitions; issue 13's target, 1.10x, is a goal, not a gate).
const MAX_INSTRUCTION_RATIO = 2;

function ciGate(results, rel, instructions, tandemRunning) {
  const tandem = results['small-get']?.tandem?.rps ?? 0;
  const httpProxy = results['small-get']?.['http-proxy']?.rps ?? 0;
  // round by round, as the ratios: the machine's speed may drift between rounds
  const ratio = rel['small-get']?.throughputVsHttpProxy ?? 0;
  console.log(`\nci gate (small GET): tandem ${tandem.toFixed(0)} req/s vs http-proxy ${httpProxy.toFixed(0)} req/s (medians); per-round ratio ${ratio.toFixed(2)}`);
  if (!tandemRunning || ratio < 1) {
    console.log('FAIL: tandem is slower than http-proxy');
    process.exitCode = 1;
  } else {
    console.log('ok: tandem is at least as fast as http-proxy');
  }
  if (!instructions) {
    console.log('ci gate (instructions): not counted, see the notes');
  } else if (instructions.ratio > MAX_INSTRUCTION_RATIO) {
    console.log(`FAIL: tandem runs ${instructions.ratio.toFixed(2)}x bare undici's instructions per request (limit ${MAX_INSTRUCTION_RATIO}x)`);
    process.exitCode = 1;
  } else {
    console.log(`ok: tandem runs ${instructions.ratio.toFixed(2)}x bare undici's instructions per request (limit ${MAX_INSTRUCTION_RATIO}x)`);
  }
}

async function main() {
  if (opts.heap) return (await import('./heap.js')).heapCurve({ durationS: Number(opts.duration ?? 5), rounds: Number(opts.rounds ?? 3) });
  if (opts.profile) return (await import('./profile.js')).profileTandem({ durationS: Number(opts.duration ?? 5) });
  return benchmark();
}

main().catch(async (err) => {
  console.error(err);
  await teardown();
  process.exitCode = 1;
});
