// Where tandem's CPU goes: tandem runs with --cpu-prof under the small-GET
// load, exits cleanly, and the profile's self time is summed per function.
// Run with `node bench/run.js --profile` (after `npm run build`).
import { readdirSync, readFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTandem } from './lib/peers.js';
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

export async function profileTandem({ durationS }) {
  const ctx = await prepare();
  const profDir = join(ctx.dir, 'prof');
  mkdirSync(profDir);
  const proxy = await startTandem({ ...ctx, nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
  const r = await measure(proxy, { kind: 'closed', path: '/small', connections: 50, durationS }, ctx);
  console.log(`tandem under --cpu-prof: ${r.rps.toFixed(0)} req/s, ${r.cpuUsPerReq.toFixed(1)} µs CPU/req`);
  // The profile is written when the process exits, so let the drain finish.
  proxy.tracked.child.kill('SIGTERM');
  await Promise.race([proxy.tracked.exit, new Promise((resolve) => setTimeout(resolve, 15_000))]);
  await stop(proxy.tracked);
  const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) {
    await teardown(ctx);
    throw new Error('tandem wrote no CPU profile (it must exit through a clean shutdown on SIGTERM)');
  }
  const kept = new URL('./results/tandem-small-get.cpuprofile', import.meta.url);
  copyFileSync(join(profDir, files[0]), kept);
  const times = selfTimes(JSON.parse(readFileSync(join(profDir, files[0]), 'utf8')));
  const top = times.slice(0, 30);
  await teardown(ctx);
  console.log('\nself time   share  function');
  for (const t of top) console.log(`${t.ms.toFixed(0).padStart(7)} ms ${(t.share * 100).toFixed(1).padStart(5)}%  ${t.fn}`);
  console.log('\nshare  owner (the profile includes start-up and idle time)');
  for (const [name, share] of byOwner(times)) console.log(`${(share * 100).toFixed(1).padStart(5)}%  ${name}`);
  console.log(`\nfull profile: ${kept.pathname} (open in Chrome DevTools > Performance)`);
}
