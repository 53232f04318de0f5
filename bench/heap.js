// Heap curve: tandem's small-GET throughput and peak RSS for several V8
// young-generation sizes (--max-semi-space-size, in MiB), to choose the
// default that keeps peak RSS at or under 100 MB without losing throughput.
// Every variant runs at once on its own ports and the rounds interleave them.
// Run with `node bench/run.js --heap` (after `npm run build`).
import { startTandem, shippedFlags } from './lib/peers.js';
import { peakRssBytes } from './lib/proc-stats.js';
import { closedLoop } from './lib/load.js';
import { prepare, teardown, measure, inTurn } from './lib/setup.js';
import { summarize, machine, writeResults } from './lib/report.js';

const SEMI_SPACE_MIB = [null, 1, 2, 4, 8, 16];

/** tandem's other shipped flags stay on in every variant: only the semi-space size changes. */
const OTHER_FLAGS = shippedFlags().filter((f) => !f.startsWith('--max-semi-space-size'));

export async function heapCurve({ durationS, rounds }) {
  const ctx = await prepare();
  const scenario = { name: 'small-get', kind: 'closed', path: '/small', connections: 50, durationS };
  const variants = [];
  for (const mib of SEMI_SPACE_MIB) {
    const nodeFlags = [...OTHER_FLAGS, ...(mib === null ? [] : [`--max-semi-space-size=${mib}`])];
    const label = mib === null ? 'default' : `${mib} MiB`;
    try {
      variants.push({ label, nodeFlags, proxy: await startTandem({ ...ctx, nodeFlags, tag: `tandem-semi-${mib ?? 'default'}` }), runs: [] });
    } catch (err) {
      console.log(`tandem failed to start with ${label}: ${err.message.split('\n')[0]}`);
    }
  }
  if (variants.length === 0) {
    await teardown(ctx);
    throw new Error('tandem failed to start: no heap variant to measure');
  }
  for (const v of variants) await closedLoop({ url: `${v.proxy.origin}/small`, connections: 50, durationS: 1 });
  for (let round = 1; round <= rounds; round += 1) {
    for (const v of inTurn(variants, round)) {
      const r = await measure(v.proxy, scenario, ctx);
      v.runs.push(r);
      console.log(`round ${round} semi-space ${v.label}: ${r.rps.toFixed(0)} req/s, ${(peakRssBytes(v.proxy.pid) / 2 ** 20).toFixed(1)} MiB peak RSS`);
    }
  }
  const rows = variants.map((v) => ({ semiSpace: v.label, nodeFlags: v.nodeFlags, ...summarize(v.runs), peakRss: peakRssBytes(v.proxy.pid) }));
  await teardown(ctx);

  const info = machine();
  const lines = [
    '## tandem heap curve (small GET, closed loop, 50 connections)', '',
    `${info.date.slice(0, 10)} · Node ${info.node} · ${info.cpuModel} · ${rounds} interleaved rounds of ${durationS} s, medians`,
    `Every variant also runs with ${OTHER_FLAGS.join(' ') || 'no other flag'}.`, '',
    '| --max-semi-space-size | req/s | p99 ms | CPU µs/req | peak RSS MiB |', '| --- | ---: | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.semiSpace} | ${r.rps.toFixed(0)} | ${r.p99Ms} | ${r.cpuUsPerReq.toFixed(1)} | ${(r.peakRss / 2 ** 20).toFixed(1)} |`), '',
  ];
  console.log(`\n${lines.join('\n')}`);
  writeResults(new URL('./results/', import.meta.url), 'heap', { ...info, durationS, rounds, rows }, lines.join('\n'));
}
