// Tracing's cost (issue 12) inside `npm run bench`: two more tandems take
// part in the interleaved rounds, both from configs/tracing-on.yaml
// (tandem.bench.yaml with every trace sampled): one exports to an
// accepting collector (otlp-sink.js on the load CPU), one to a closed
// loopback port. Their figures go over plain tandem's round by round.
// Then, full run only: 60 s of load with the collector down while the RSS
// is sampled (the span queue's cap must bound it), and tandem's
// instructions per request with tracing off and on, counted side by side.
import { fileURLToPath } from 'node:url';
import { startTandem, LOAD_CPU } from './peers.js';
import { firstJsonLine, startPinned } from './processes.js';
import { freePort } from './net.js';
import { rssBytes } from './proc-stats.js';
import { throughputLoop } from './load.js';
import { pairedInstructions, pairRange } from './instructions.js';
import { median, paired, table, fmt, mib, withRange } from './report.js';

const template = new URL('../configs/tracing-on.yaml', import.meta.url);
const offConfig = new URL('../tandem.bench.yaml', import.meta.url);
const sinkJs = fileURLToPath(new URL('../otlp-sink.js', import.meta.url));

const ON = 'tandem-tracing';
const DEAD = 'tandem-tracing-dead';

async function startAccepting(ctx) {
  const sink = startPinned(LOAD_CPU, process.execPath, [sinkJs]);
  const { port } = await firstJsonLine(sink, 'otlp-sink.js');
  return startTandem({ ...ctx, template, collectorPort: port, tag: ON });
}

async function startDead(ctx) {
  // bound and closed again: nothing listens there, every export is refused
  return startTandem({ ...ctx, template, collectorPort: await freePort(), tag: DEAD });
}

/** Peers for bench/run.js's list; `fullOnly`: left out of --ci unless named in --peers. */
export const TRACING_PEERS = [
  { name: ON, label: 'tandem, tracing on (sampling 1.0, collector accepting)', start: startAccepting, fullOnly: true },
  { name: DEAD, label: 'tandem, tracing on (sampling 1.0, collector down)', start: startDead, fullOnly: true },
];

const RSS_RUN_S = 60;
const RSS_SAMPLE_MS = 1000;

async function droppedSpans(adminOrigin) {
  const text = await (await fetch(`${adminOrigin}/metrics`)).text();
  return Number(/^tandem_tracing_spans_dropped_total (\d+)/m.exec(text)?.[1] ?? NaN);
}

/**
 * The collector-down tandem under small GETs (wrk, 50 connections) for
 * 60 s, its RSS read every second: at the start, the peak and at the end.
 * It has run every round before, so its heap has long reached its working size.
 */
export async function collectorDownRss(running) {
  const peer = running.find((p) => p.name === DEAD && !p.proxy.tracked.exited);
  if (!peer) return null;
  const { pid, origin, adminOrigin } = peer.proxy;
  const droppedBefore = await droppedSpans(adminOrigin);
  const t0 = performance.now();
  const samples = [{ s: 0, rss: rssBytes(pid) }];
  const sampler = setInterval(() => samples.push({ s: (performance.now() - t0) / 1000, rss: rssBytes(pid) }), RSS_SAMPLE_MS);
  let load;
  try {
    load = await throughputLoop({ url: `${origin}/small`, connections: 50, durationS: RSS_RUN_S });
  } finally {
    clearInterval(sampler);
  }
  samples.push({ s: (performance.now() - t0) / 1000, rss: rssBytes(pid) });
  const rss = samples.map((x) => x.rss).filter((v) => v !== null);
  const result = {
    durationS: RSS_RUN_S,
    requests: load.requests,
    failures: load.failures,
    rps: load.rps,
    dropped: (await droppedSpans(adminOrigin)) - droppedBefore,
    startRss: rss[0],
    peakRss: Math.max(...rss),
    endRss: rss.at(-1),
    samples,
  };
  console.log(`collector down, ${RSS_RUN_S} s: ${load.requests} requests, ${load.failures} failures, RSS ${mib(result.startRss)} → peak ${mib(result.peakRss)} → ${mib(result.endRss)} MiB`);
  return result;
}

/** tandem's instructions per request with tracing off and on, counted side by side (instructions.sh pair). */
export async function tracingInstructions() {
  const { a: off, b: on } = await pairedInstructions(fileURLToPath(offConfig), fileURLToPath(template));
  return { on, off, onMedian: median(on), offMedian: median(off), ratio: median(on) / median(off), ratioRange: pairRange(on, off) };
}

const p99Key = (scenario) => (scenario.kind === 'open' ? 'p99Us' : 'p99Ms');

/** The per-round ratios of the tracing peers over plain tandem, per scenario; null when neither tracing peer ran. */
export function tracingRatios(scenarios, raw) {
  if (!scenarios.some((s) => raw[s.name]?.[ON] || raw[s.name]?.[DEAD])) return null;
  const out = {};
  for (const s of scenarios) {
    const rounds = raw[s.name] ?? {};
    out[s.name] = {
      cpuOn: paired(rounds, 'cpuUsPerReq', ON, 'tandem'),
      cpuDead: paired(rounds, 'cpuUsPerReq', DEAD, 'tandem'),
      p99Dead: paired(rounds, p99Key(s), DEAD, 'tandem'),
      failuresDead: rounds[DEAD]?.reduce((n, r) => n + r.failures, 0) ?? null,
      failuresOff: rounds.tandem?.reduce((n, r) => n + r.failures, 0) ?? null,
    };
  }
  return out;
}

/** The tracing section: { title, text } parts for the console and results/latest.md. */
export function tracingSections({ scenarios, ratios, instructions, rss }) {
  const sections = [];
  if (ratios) {
    const cell = (r) => withRange(r.median, r.range);
    const rows = [
      ['tracing on/off, CPU per req (collector accepting)', ...scenarios.map((s) => cell(ratios[s.name].cpuOn))],
      ['collector down/tracing off, CPU per req', ...scenarios.map((s) => cell(ratios[s.name].cpuDead))],
      ['collector down/tracing off, p99', ...scenarios.map((s) => cell(ratios[s.name].p99Dead))],
      ['failed requests, collector down (tracing off)', ...scenarios.map((s) => `${fmt(ratios[s.name].failuresDead)} (${fmt(ratios[s.name].failuresOff)})`)],
    ];
    sections.push({
      title: 'tracing (issue 12): tandem with tracing on over tandem with it off',
      text: `Median of the per-round ratios (range over the rounds); every trace sampled (configs/tracing-on.yaml).\n\n${table(['ratio', ...scenarios.map((s) => s.label)], rows)}`,
    });
  }
  if (instructions) {
    const range = (v) => `${Math.min(...v)}–${Math.max(...v)}`;
    sections.push({
      title: 'tracing: instructions per request (callgrind, small GET)',
      text: table(['tandem', 'instructions per request', `range over ${instructions.on.length} repetitions`], [
        ['tracing off (tandem.bench.yaml)', fmt(instructions.offMedian), range(instructions.off)],
        ['tracing on, collector accepting (configs/tracing-on.yaml)', fmt(instructions.onMedian), range(instructions.on)],
        ['on/off', fmt(instructions.ratio, 2), `${fmt(instructions.ratioRange[0], 2)}–${fmt(instructions.ratioRange[1], 2)} (repetition by repetition)`],
      ]),
    });
  }
  if (rss) {
    const every10 = rss.samples.filter((x, i) => i === 0 || Math.floor(x.s / 10) > Math.floor(rss.samples[i - 1].s / 10));
    sections.push({
      title: `tracing: ${rss.durationS} s of small GETs with the collector down`,
      text: `${table(['requests', 'failures', 'req/s', 'spans dropped', 'RSS at start MiB', 'peak RSS MiB', 'RSS at end MiB'], [
        [String(rss.requests), String(rss.failures), fmt(rss.rps), String(rss.dropped), mib(rss.startRss), mib(rss.peakRss), mib(rss.endRss)],
      ])}\n\nRSS every 10 s (MiB): ${every10.map((x) => `${fmt(x.s)} s ${mib(x.rss)}`).join(', ')}`,
    });
  }
  return sections;
}
