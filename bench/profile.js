// Where tandem's CPU goes: tandem runs with --cpu-prof under the small-GET
// load, exits cleanly, and the profile's self time is summed per function.
// Then the bare undici pass-through runs the same load with tandem's own V8
// flags, and the two profiles are compared per request: what tandem spends
// beyond the pass-through, function by function.
// Run with `node bench/run.js --profile` (after `npm run build`).
import { readdirSync, readFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTandem, startBareUndici, shippedFlags } from './lib/peers.js';
import { stop } from './lib/processes.js';
import { prepare, teardown, measure } from './lib/setup.js';

/** Self time per function (name, file, line), largest first. */
export function selfTimes(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map();
  let all = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    const key = `${functionName || '(anonymous)'} ${url.replace(/^file:\/\//, '').replace(process.cwd() + '/', '')}:${lineNumber + 1}`;
    totals.set(key, (totals.get(key) ?? 0) + delta);
    all += delta;
  });
  return [...totals].sort((a, b) => b[1] - a[1]).map(([fn, us]) => ({ fn, ms: us / 1000, share: us / all }));
}

/** Where a function lives: a package, a tandem folder, Node's core, or the VM itself. */
function owner(fn) {
  const file = fn.slice(fn.indexOf(' ') + 1);
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  if (pkg) return pkg[1];
  const own = /^dist\/([^/:]+)/.exec(file);
  if (own) return `tandem ${own[1].replace(/\.js$/, '')}`;
  if (file.startsWith('node:')) return 'node core (js)';
  return 'native / vm';
}

export function byOwner(times) {
  const totals = new Map();
  for (const t of times) totals.set(owner(t.fn), (totals.get(owner(t.fn)) ?? 0) + t.share);
  return [...totals].sort((a, b) => b[1] - a[1]);
}

/** `start(flags)` under --cpu-prof: 1 s of warm-up, then `durationS` of small GETs; self time per function and per request. */
async function profiled(name, start, ctx, durationS) {
  const profDir = join(ctx.dir, `prof-${name}`);
  mkdirSync(profDir);
  const proxy = await start(['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--cpu-prof-interval=200']);
  const scenario = { kind: 'closed', path: '/small', connections: 50 };
  const warm = await measure(proxy, { ...scenario, durationS: 1 }, ctx);
  const r = await measure(proxy, { ...scenario, durationS }, ctx);
  // The profile is written when the process exits, so let it shut down cleanly.
  proxy.tracked.child.kill('SIGTERM');
  await Promise.race([proxy.tracked.exit, new Promise((resolve) => setTimeout(resolve, 15_000))]);
  await stop(proxy.tracked);
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`${name} wrote no CPU profile (it must exit cleanly on SIGTERM)`);
  const times = selfTimes(JSON.parse(readFileSync(join(profDir, file), 'utf8')));
  // The profile spans start-up, warm-up and the run: per request over all requests served.
  const requests = warm.requests + r.requests;
  return { r, file: join(profDir, file), times, perRequest: new Map(times.map((t) => [t.fn, (t.ms * 1000) / requests])) };
}

export async function profileTandem({ durationS }) {
  const ctx = await prepare();
  const flags = shippedFlags();
  const tandem = await profiled('tandem', (prof) => startTandem({ ...ctx, nodeFlags: [...flags, ...prof] }), ctx, durationS);
  const bare = await profiled('bare', (prof) => startBareUndici({ ...ctx, nodeFlags: [...flags, ...prof] }), ctx, durationS);
  console.log(`tandem under --cpu-prof: ${tandem.r.rps.toFixed(0)} req/s, ${tandem.r.cpuUsPerReq.toFixed(1)} µs CPU/req`);
  console.log(`bare undici (tandem's flags) under --cpu-prof: ${bare.r.rps.toFixed(0)} req/s, ${bare.r.cpuUsPerReq.toFixed(1)} µs CPU/req`);
  const kept = new URL('./results/tandem-small-get.cpuprofile', import.meta.url);
  copyFileSync(tandem.file, kept);
  await teardown(ctx);

  console.log('\ntandem, self time   share  function');
  for (const t of tandem.times.slice(0, 30)) console.log(`${t.ms.toFixed(0).padStart(7)} ms ${(t.share * 100).toFixed(1).padStart(5)}%  ${t.fn}`);
  console.log('\nshare  owner (the profile includes start-up and idle time)');
  for (const [name, share] of byOwner(tandem.times)) console.log(`${(share * 100).toFixed(1).padStart(5)}%  ${name}`);

  const names = new Set([...tandem.perRequest.keys(), ...bare.perRequest.keys()]);
  const rows = [...names].filter((fn) => !fn.startsWith('(idle)')).map((fn) => ({ fn, t: tandem.perRequest.get(fn) ?? 0, b: bare.perRequest.get(fn) ?? 0 }));
  const total = (key) => rows.reduce((sum, row) => sum + row[key], 0);
  console.log(`\nself time per request, idle left out: tandem ${total('t').toFixed(1)} µs, bare undici ${total('b').toFixed(1)} µs (start-up included in both)`);
  console.log('tandem - bare   tandem     bare  (µs per request)  function');
  rows.sort((x, y) => y.t - y.b - (x.t - x.b));
  for (const row of rows.slice(0, 30)) console.log(`${(row.t - row.b).toFixed(2).padStart(13)} ${row.t.toFixed(2).padStart(8)} ${row.b.toFixed(2).padStart(8)}  ${row.fn}`);
  console.log(`\nfull profile: ${kept.pathname} (open in Chrome DevTools > Performance)`);
}
