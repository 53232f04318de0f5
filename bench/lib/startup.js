// Start-up time and memory at rest: tandem with a one-route config beside a
// bare node:http server (peers/bare-http.js), both on the harness's Node,
// both spawned pinned to the proxy CPU and polled the same way. A sidecar's
// start delays its Pod's, and its resident memory is paid in every Pod.
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPinned, stop } from './processes.js';
import { freePort } from './net.js';
import { rssBytes } from './proc-stats.js';
import { PROXY_CPU, shippedFlags } from './peers.js';
import { median, spread } from './report.js';

const tandemCli = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const bareHttp = fileURLToPath(new URL('../peers/bare-http.js', import.meta.url));
// Finer than the servers' start-up differences, coarse enough to leave the CPU to them.
const POLL_MS = 5;
const REST_MS = 5000;
const GIVE_UP_MS = 15_000;

function oneRouteConfig(dir, listenPort, adminPort) {
  const path = join(dir, 'startup.yaml');
  // the endpoint is never called: nothing is sent through the listener
  const lines = [
    `admin: { address: 127.0.0.1, port: ${adminPort} }`,
    'listeners:',
    `  - { name: one, address: 127.0.0.1, port: ${listenPort}, routes: [{ name: all, match: { prefix: / }, cluster: app }] }`,
    'clusters:',
    '  - { name: app, endpoints: [127.0.0.1:9] }',
  ];
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

function answers200(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
  });
}

const SERVERS = {
  tandem: async (dir) => {
    const [listenPort, adminPort] = [await freePort(), await freePort()];
    const config = oneRouteConfig(dir, listenPort, adminPort);
    return { args: [...shippedFlags(), tandemCli, '--config', config], url: `http://127.0.0.1:${adminPort}/ready` };
  },
  bare: async () => {
    const port = await freePort();
    return { args: [bareHttp, String(port)], url: `http://127.0.0.1:${port}/` };
  },
};

/** One start: ms from spawn to the first 200, and the RSS `REST_MS` after spawn when `atRest`. */
async function startOnce(name, dir, atRest) {
  const { args, url } = await SERVERS[name](dir);
  const t0 = performance.now();
  const tracked = startPinned(PROXY_CPU, process.execPath, args);
  try {
    let readyMs = null;
    while (readyMs === null) {
      if (tracked.exited) throw new Error(`${name} exited (${tracked.exitCode}) before ${url} answered: ${tracked.stderr.slice(-500)}`);
      if (performance.now() - t0 > GIVE_UP_MS) throw new Error(`${name}: ${url} did not answer 200 within ${GIVE_UP_MS} ms`);
      if (await answers200(url)) readyMs = performance.now() - t0;
      else await sleep(POLL_MS);
    }
    if (!atRest) return { readyMs, rss: null };
    await sleep(Math.max(0, REST_MS - (performance.now() - t0)));
    return { readyMs, rss: rssBytes(tracked.child.pid) };
  } finally {
    await stop(tracked);
  }
}

/**
 * `starts` starts of each server, alternating which goes first; the first
 * `restStarts` of each also wait at rest for the RSS. Medians, and tandem
 * over the bare server's figure, taken start pair by start pair (range).
 */
export async function startupAndRest({ starts = 10, restStarts = 3 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-startup-'));
  const runs = { tandem: [], bare: [] };
  try {
    for (let i = 0; i < starts; i += 1) {
      const order = i % 2 ? ['bare', 'tandem'] : ['tandem', 'bare'];
      for (const name of order) runs[name].push(await startOnce(name, dir, i < restStarts));
      console.log(`start ${i + 1}: tandem /ready ${runs.tandem[i].readyMs.toFixed(0)} ms, bare node:http / ${runs.bare[i].readyMs.toFixed(0)} ms`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const summary = (name) => ({
    readyMs: median(runs[name].map((r) => r.readyMs)),
    restRss: median(runs[name].filter((r) => r.rss).map((r) => r.rss)),
  });
  const pairs = (key) => spread(runs.tandem.map((r, i) => (r[key] && runs.bare[i][key] ? r[key] / runs.bare[i][key] : NaN)));
  return { starts, restStarts, restMs: REST_MS, tandem: summary('tandem'), bare: summary('bare'), readyRatio: pairs('readyMs'), rssRatio: pairs('rss'), runs };
}
