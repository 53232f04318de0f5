// Hot reload (CONTRACT §5) over real files and sockets: the watched file
// (in place, written in pieces, a ConfigMap symlink swap), SIGHUP on the
// built CLI, POST /reload; invalid files change nothing; unchanged clusters
// keep their pools and state; removed ones close; no request is lost.

import { openSync, closeSync, renameSync, symlinkSync, writeFileSync, writeSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import { DEFAULT_CONFIG_YAML } from '../src/config/default.js';
import { Tandem } from '../src/tandem.js';
import { restartNeeded } from '../src/reload.js';
import type { Config } from '../src/config/types.js';
import type { ClusterRuntime } from '../src/snapshot-types.js';
import {
  eventually,
  listenerYaml,
  metricValue,
  spawnTandem,
  startFromFile,
  startUpstream,
  tempDir,
  type TandemProcess,
  type Upstream,
} from './support/harness.js';

let tandems: Tandem[] = [];
let ups: Upstream[] = [];
let procs: TandemProcess[] = [];
afterEach(async () => {
  for (const p of procs) p.kill();
  await Promise.all(tandems.map((t) => t.close()));
  await Promise.all(ups.map((u) => u.close()));
  tandems = [];
  ups = [];
  procs = [];
});


/** One listener on port 0 logging JSON to `dir`; `routes` and `clusters` are YAML list items at their indentation. */
const yaml = (dir: string, routes: string, clusters: string): string =>
  listenerYaml(`{ format: json, path: ${join(dir, 'access.log')} }`, routes, clusters);

const route = (name: string, prefix: string, cluster: string): string =>
  `      - { name: ${name}, match: { prefix: ${prefix} }, cluster: ${cluster} }`;
const direct = (name: string, prefix: string, body: string): string =>
  `      - { name: ${name}, match: { prefix: ${prefix} }, directResponse: { status: 200, body: ${body} } }`;
const cluster = (name: string, ports: number[], extra = ''): string =>
  `  - { name: ${name}, endpoints: [${ports.map((p) => `127.0.0.1:${p}`).join(', ')}]${extra} }`;

interface Running {
  tandem: Tandem;
  url: string;
  admin: string;
}

/** tandem in this process, configured from `file` and watching it */
async function startFrom(file: string): Promise<Running> {
  const tandem = await startFromFile(file, (t) => tandems.push(t));
  return { tandem, url: `http://127.0.0.1:${tandem.listeners[0]!.port}`, admin: `http://127.0.0.1:${tandem.adminPort}` };
}

async function upstream(body: string): Promise<Upstream> {
  const u = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(body);
  });
  ups.push(u);
  return u;
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

async function configVersion(admin: string): Promise<{ version: number; loadedAt: string }> {
  return (await (await fetch(`${admin}/config`)).json()) as { version: number; loadedAt: string };
}

async function postReload(admin: string): Promise<{ status: number; body: { version?: number; errors?: string[] } }> {
  const res = await fetch(`${admin}/reload`, { method: 'POST' });
  return { status: res.status, body: (await res.json()) as { version?: number; errors?: string[] } };
}

const reloads = (admin: string, result: 'success' | 'failure'): Promise<number> =>
  metricValue(admin, 'tandem_config_reloads_total', { result }).then((v) => v ?? 0);

/** the cluster runtime behind the listener's route `name` */
function runtimeOf(t: Tandem, name: string): ClusterRuntime {
  return t.listeners[0]!.ctx.listener.routes.find((r) => r.name === name)!.pickCluster!();
}

describe('the watched file', () => {
  it('applies an edit within 2 s: new routes answer, /config shows the new version', async () => {
    const dir = tempDir('tandem-reload-');
    const file = join(dir, 'tandem.yaml');
    const a = await upstream('from a');
    writeFileSync(file, yaml(dir, route('a', '/a', 'a'), cluster('a', [a.port])));
    const t = await startFrom(file);
    const before = await configVersion(t.admin);
    expect(before.version).toBe(1);
    expect((await get(`${t.url}/b`)).status).toBe(404);

    const edited = Date.now();
    writeFileSync(file, yaml(dir, [route('a', '/a', 'a'), direct('b', '/b', 'from-b')].join('\n'), cluster('a', [a.port])));
    expect(await eventually(async () => (await get(`${t.url}/b`)).status === 200, 2000)).toBe(true);
    expect(Date.now() - edited).toBeLessThan(2000);
    expect(await get(`${t.url}/b`)).toEqual({ status: 200, body: 'from-b' });
    expect(await get(`${t.url}/a`)).toEqual({ status: 200, body: 'from a' });
    const after = await configVersion(t.admin);
    expect(after.version).toBe(2);
    expect(Date.parse(after.loadedAt)).toBeGreaterThan(Date.parse(before.loadedAt));
    expect(await reloads(t.admin, 'success')).toBe(1);
  });

  it('reads a file written in pieces once it is complete', async () => {
    const dir = tempDir('tandem-reload-');
    const file = join(dir, 'tandem.yaml');
    writeFileSync(file, yaml(dir, direct('one', '/', 'one'), cluster('a', [9])));
    const t = await startFrom(file);
    const text = yaml(dir, direct('two', '/', 'two'), cluster('a', [9]));
    const fd = openSync(file, 'w');
    writeSync(fd, text.slice(0, text.length / 2));
    await sleep(100);
    writeSync(fd, text.slice(text.length / 2));
    closeSync(fd);
    expect(await eventually(async () => (await get(`${t.url}/`)).body === 'two', 2000)).toBe(true);
    expect(await reloads(t.admin, 'failure')).toBe(0);
    expect(await reloads(t.admin, 'success')).toBe(1);
    expect((await configVersion(t.admin)).version).toBe(2);
  });

  it('an invalid file changes nothing: errors logged, failure counted, old version kept', async () => {
    const dir = tempDir('tandem-reload-');
    const file = join(dir, 'tandem.yaml');
    const valid = yaml(dir, direct('one', '/', 'one'), cluster('a', [9]));
    writeFileSync(file, valid);
    const t = await startFrom(file);

    // cut mid-document: the shape of a file caught half-written
    writeFileSync(file, valid.slice(0, valid.indexOf('clusters:') + 12));
    expect(await eventually(async () => (await reloads(t.admin, 'failure')) === 1, 2000)).toBe(true);
    // valid YAML naming a cluster that does not exist
    writeFileSync(file, yaml(dir, route('one', '/', 'nowhere'), cluster('a', [9])));
    expect(await eventually(async () => (await reloads(t.admin, 'failure')) === 2, 2000)).toBe(true);

    expect(await get(`${t.url}/`)).toEqual({ status: 200, body: 'one' });
    expect((await configVersion(t.admin)).version).toBe(1);
    expect(await reloads(t.admin, 'success')).toBe(0);

    // fixed: applied
    writeFileSync(file, yaml(dir, direct('one', '/', 'fixed'), cluster('a', [9])));
    expect(await eventually(async () => (await get(`${t.url}/`)).body === 'fixed', 2000)).toBe(true);
    expect((await configVersion(t.admin)).version).toBe(2);
  });

  it('follows a Kubernetes ConfigMap update: ..data swapped atomically', async () => {
    const dir = tempDir('tandem-reload-');
    mkdirSync(join(dir, '..2024_01'));
    writeFileSync(join(dir, '..2024_01', 'tandem.yaml'), yaml(dir, direct('one', '/', 'first'), cluster('a', [9])));
    symlinkSync('..2024_01', join(dir, '..data'));
    symlinkSync(join('..data', 'tandem.yaml'), join(dir, 'tandem.yaml'));
    const t = await startFrom(join(dir, 'tandem.yaml'));
    expect((await get(`${t.url}/`)).body).toBe('first');

    // What the kubelet does: a new timestamped directory, a new symlink to
    // it, renamed over ..data. tandem.yaml itself is never touched.
    mkdirSync(join(dir, '..2024_02'));
    writeFileSync(join(dir, '..2024_02', 'tandem.yaml'), yaml(dir, direct('one', '/', 'second'), cluster('a', [9])));
    symlinkSync('..2024_02', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));

    expect(await eventually(async () => (await get(`${t.url}/`)).body === 'second', 2000)).toBe(true);
    expect((await configVersion(t.admin)).version).toBe(2);
  });

  it('stops watching on close', async () => {
    const dir = tempDir('tandem-reload-');
    const file = join(dir, 'tandem.yaml');
    writeFileSync(file, yaml(dir, direct('one', '/', 'one'), cluster('a', [9])));
    const t = await startFrom(file);
    await t.tandem.close();
    writeFileSync(file, 'listeners: [');
    await sleep(400);
    expect(await t.tandem.metrics.render()).not.toContain('result="failure"} 1');
  });
});

describe('reload while shutting down', () => {
  it('a reload still loading when tandem closes is refused, not applied', async () => {
    const dir = tempDir('tandem-reload-');
    const file = join(dir, 'tandem.yaml');
    writeFileSync(file, yaml(dir, direct('one', '/', 'one'), cluster('a', [9])));
    const t = await startFrom(file);
    t.tandem['reloader']!.unwatch();
    writeFileSync(file, yaml(dir, direct('one', '/', 'two'), cluster('a', [9], ', loadBalancing: random')));
    // the file loads in a child process for 0.2 s or more: close() lands meanwhile
    const reloading = t.tandem.reload();
    const closing = t.tandem.close();
    expect(await reloading).toEqual({ ok: false, errors: ['tandem is shutting down: the configuration was not applied'] });
    await closing;
    expect(t.tandem['current'].version).toBe(1);
    expect(t.tandem['current'].config.clusters[0]!.loadBalancing).toBe('round_robin');
  });

  it('a reload during the drain, before tandem closes, is applied', async () => {
    const dir = tempDir('tandem-reload-');
    const file = join(dir, 'tandem.yaml');
    writeFileSync(file, yaml(dir, direct('one', '/', 'one'), cluster('a', [9])).replace('delay: 0s', 'delay: 2s'));
    const t = await startFrom(file);
    const draining = t.tandem.drain();
    writeFileSync(file, yaml(dir, direct('one', '/', 'two'), cluster('a', [9])).replace('delay: 0s', 'delay: 2s'));
    expect(await t.tandem.reload()).toEqual({ ok: true, version: 2 });
    await draining;
  });
});

describe('POST /reload', () => {
  it('answers 200 with the new version, 400 with every error line, and 400 for a listener change', async () => {
    const dir = tempDir('tandem-reload-');
    const file = join(dir, 'tandem.yaml');
    writeFileSync(file, yaml(dir, direct('one', '/', 'one'), cluster('a', [9])));
    const t = await startFrom(file);
    // stop the watcher racing these explicit reloads
    t.tandem['reloader']!.unwatch();

    writeFileSync(file, yaml(dir, direct('one', '/', 'two'), cluster('a', [9])));
    expect(await postReload(t.admin)).toEqual({ status: 200, body: { version: 2 } });
    expect((await get(`${t.url}/`)).body).toBe('two');

    writeFileSync(file, yaml(dir, route('one', '/', 'nowhere'), cluster('a', [9, 'x' as unknown as number])));
    const bad = await postReload(t.admin);
    expect(bad.status).toBe(400);
    expect(bad.body.errors!.length).toBeGreaterThanOrEqual(2);
    for (const line of bad.body.errors!) expect(line).toMatch(new RegExp(`^${file}:\\d+:\\d+: [\\w.]+: .+`));
    expect(bad.body.errors!.join('\n')).toContain('nowhere');

    writeFileSync(file, yaml(dir, direct('one', '/', 'three'), cluster('a', [9])).replace('    port: 0', '    port: 1'));
    const moved = await postReload(t.admin);
    expect(moved.status).toBe(400);
    expect(moved.body.errors).toEqual([`${file}: listeners.inbound: address, port, limits or tls cannot change on reload; restart tandem to apply it`]);

    expect((await get(`${t.url}/`)).body).toBe('two');
    expect((await configVersion(t.admin)).version).toBe(2);
    expect(await reloads(t.admin, 'failure')).toBe(2);
    expect(await reloads(t.admin, 'success')).toBe(1);

    // unchanged text: nothing to swap, the version stays
    writeFileSync(file, yaml(dir, direct('one', '/', 'two'), cluster('a', [9])));
    expect(await postReload(t.admin)).toEqual({ status: 200, body: { version: 2 } });
  });

  it('answers 400 for the embedded default, which has no file', async () => {
    const loaded = loadConfigText(DEFAULT_CONFIG_YAML.replace('port: 15000', 'port: 0').replace('0.0.0.0', '127.0.0.1'), '<default>');
    if (!loaded.ok) throw new Error('default config invalid');
    const tandem = new Tandem(loaded.config);
    tandems.push(tandem);
    await tandem.start({ adminPort: 0 });
    const res = await postReload(`http://127.0.0.1:${tandem.adminPort}`);
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual(['the embedded default configuration cannot be reloaded: start tandem with --config FILE']);
  });
});

describe('clusters across a reload', () => {
  it('an unchanged cluster keeps its endpoints, connections and ejections; a removed one closes after its in-flight request', async () => {
    const dir = tempDir('tandem-reload-');
    const file = join(dir, 'tandem.yaml');
    const keepPorts: number[] = [];
    const keep = await startUpstream((req, res) => {
      keepPorts.push(req.socket.remotePort!);
      res.end('keep');
    });
    ups.push(keep);
    const failing = await startUpstream((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    ups.push(failing);
    let releaseSlow: () => void = () => undefined;
    const drop = await startUpstream((_req, res) => {
      releaseSlow = () => res.end('slow drop');
    });
    ups.push(drop);

    const keepCluster = cluster('keep', [keep.port, failing.port], ', loadBalancing: round_robin, outlierDetection: { consecutive5xx: 1, baseEjectionTime: 30s, maxEjectionPercent: 50 }');
    const routes = [route('keep', '/keep', 'keep'), route('drop', '/drop', 'drop')].join('\n');
    writeFileSync(file, yaml(dir, routes, [keepCluster, cluster('drop', [drop.port])].join('\n')));
    const t = await startFrom(file);
    t.tandem['reloader']!.unwatch();

    // eject the failing endpoint
    for (let i = 0; i < 4; i++) await get(`${t.url}/keep`);
    const clusters = async () =>
      (await (await fetch(`${t.admin}/clusters`)).json()) as { name: string; endpoints: { port: number; ejected: boolean }[] }[];
    const ejected = (await clusters()).find((c) => c.name === 'keep')!.endpoints.find((e) => e.port === failing.port)!;
    expect(ejected.ejected).toBe(true);
    expect((await get(`${t.url}/keep`)).body).toBe('keep');
    const keepRuntime = runtimeOf(t.tandem, 'keep');
    const dropRuntime = runtimeOf(t.tandem, 'drop');

    const slow = get(`${t.url}/drop`);
    expect(await eventually(() => drop.seen.length === 1)).toBe(true);

    writeFileSync(file, yaml(dir, [route('keep', '/keep', 'keep'), direct('new', '/new', 'new')].join('\n'), keepCluster));
    expect(await postReload(t.admin)).toEqual({ status: 200, body: { version: 2 } });

    // the same runtime, the same keep-alive connection, still ejected
    expect(runtimeOf(t.tandem, 'keep')).toBe(keepRuntime);
    expect((await get(`${t.url}/keep`)).body).toBe('keep');
    expect(new Set(keepPorts).size).toBe(1);
    const after = (await clusters()).find((c) => c.name === 'keep')!.endpoints.find((e) => e.port === failing.port)!;
    expect(after.ejected).toBe(true);
    expect((await clusters()).map((c) => c.name)).toEqual(['keep']);
    expect((await get(`${t.url}/drop`)).status).toBe(404);

    // the removed cluster's pool waits for its in-flight request, then closes
    const pool = dropRuntime.cluster.endpoints[0]!.pool;
    await sleep(150);
    expect(pool.destroyed).toBe(false);
    releaseSlow();
    expect(await slow).toEqual({ status: 200, body: 'slow drop' });
    expect(await eventually(() => pool.closed, 2000)).toBe(true);
    const connections = () => new Promise<number>((resolve) => drop.server.getConnections((_e, n) => resolve(n)));
    expect(await eventually(async () => (await connections()) === 0, 2000)).toBe(true);
  });

  it('loses no request while reloading under load', async () => {
    const dir = tempDir('tandem-reload-');
    const file = join(dir, 'tandem.yaml');
    const a = await upstream('a');
    const b = await upstream('b');
    const config = (n: number): string =>
      yaml(
        dir,
        [route('main', '/', 'app'), direct(`extra${n}`, `/extra${n}`, 'x')].join('\n'),
        // every version changes the cluster: its runtime is replaced each time
        cluster('app', n % 2 === 0 ? [a.port, b.port] : [b.port, a.port], `, connectTimeout: ${1000 + n}ms`),
      );
    writeFileSync(file, config(0));
    const t = await startFrom(file);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
    const statuses: number[] = [];
    const one = (): Promise<number> =>
      new Promise((resolve, reject) => {
        http
          .get(`${t.url}/`, { agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          })
          .on('error', reject);
      });
    const workers = Array.from({ length: 10 }, async () => {
      for (let i = 0; i < 30; i++) {
        statuses.push(await one());
        await sleep(25);
      }
    });
    const reloading = (async () => {
      for (let n = 1; n <= 3; n++) {
        await sleep(250);
        writeFileSync(file, config(n));
        expect((await postReload(t.admin)).status).toBe(200);
      }
    })();
    await Promise.all([...workers, reloading]);
    agent.destroy();
    expect(statuses).toHaveLength(300);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect((await configVersion(t.admin)).version).toBe(4);
  });
});

describe('rate-limit buckets across a reload', () => {
  const limited = (name: string, rateLimit: string): string =>
    `      - { name: ${name}, match: { prefix: /x }, directResponse: { status: 200, body: ok }, rateLimit: ${rateLimit} }`;
  /** one token every 1000 s: nothing refills while the test runs */
  const tight = '{ requestsPerSecond: 0.001, burst: 2, key: route }';

  async function statuses(url: string, n: number): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await get(url)).status);
    return out;
  }

  it('keeps an exhausted bucket over an unrelated change; a changed rateLimit or a new route name starts full', async () => {
    const dir = tempDir('tandem-reload-');
    const file = join(dir, 'tandem.yaml');
    const write = (routes: string[]): void => writeFileSync(file, yaml(dir, routes.join('\n'), cluster('a', [9])));
    write([limited('api', tight), direct('other', '/other', 'one')]);
    const t = await startFrom(file);
    t.tandem['reloader']!.unwatch();
    expect(await statuses(`${t.url}/x`, 3)).toEqual([200, 200, 429]);

    // another route's edit: api's bucket is still empty
    write([limited('api', tight), direct('other', '/other', 'two')]);
    expect((await postReload(t.admin)).status).toBe(200);
    expect(await get(`${t.url}/other`)).toEqual({ status: 200, body: 'two' });
    expect(await statuses(`${t.url}/x`, 1)).toEqual([429]);

    // nor does an edit of the route itself that leaves its name and rateLimit alone
    write([limited('api', tight).replace('body: ok', 'body: edited'), direct('other', '/other', 'two')]);
    expect((await postReload(t.admin)).status).toBe(200);
    expect(await statuses(`${t.url}/x`, 1)).toEqual([429]);
    expect(await get(`${t.url}/other`)).toEqual({ status: 200, body: 'two' });

    // a changed rateLimit starts with full buckets (burst 3 now)
    const wider = '{ requestsPerSecond: 0.001, burst: 3, key: route }';
    write([limited('api', wider), direct('other', '/other', 'two')]);
    expect((await postReload(t.admin)).status).toBe(200);
    expect(await statuses(`${t.url}/x`, 4)).toEqual([200, 200, 200, 429]);

    // the same rateLimit under another route name is another route: full again
    write([limited('api2', wider), direct('other', '/other', 'two')]);
    expect((await postReload(t.admin)).status).toBe(200);
    expect(await statuses(`${t.url}/x`, 4)).toEqual([200, 200, 200, 429]);
  });
});

describe('SIGHUP', () => {
  it('reloads the built CLI, even for a change the directory watch cannot see', async () => {
    // tandem.yaml is a symlink into another directory: writing the target in
    // place fires no event where tandem watches, so only SIGHUP applies it.
    const dir = tempDir('tandem-reload-');
    const real = join(tempDir('tandem-reload-'), 'real.yaml');
    const text = (body: string): string =>
      yaml(dir, direct('one', '/', body), cluster('a', [9])).replace(/^accessLog: .*$/m, 'accessLog: { format: off }');
    writeFileSync(real, text('before'));
    const file = join(dir, 'tandem.yaml');
    symlinkSync(real, file);
    const p = spawnTandem(['--config', file]);
    procs.push(p);
    const ports = await p.ready();
    const url = `http://127.0.0.1:${ports.listeners.inbound}/`;
    expect((await get(url)).body).toBe('before');

    writeFileSync(real, text('after'));
    await sleep(400);
    expect((await get(url)).body).toBe('before');
    p.child.kill('SIGHUP');
    expect(await eventually(async () => (await get(url)).body === 'after', 2000)).toBe(true);
    expect(p.stderr()).toContain('"configuration reloaded"');
    expect(p.stderr()).not.toContain('not supported');

    // an invalid file: its error lines are logged, nothing changes
    writeFileSync(real, text('broken').replace('endpoints:', 'endpointz:'));
    p.child.kill('SIGHUP');
    expect(await eventually(() => p.stderr().includes('configuration reload failed'), 2000)).toBe(true);
    expect(p.stderr()).toMatch(new RegExp(`${file}:\\d+:\\d+: [\\w.]+: `));
    expect((await get(url)).body).toBe('after');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });
});

describe('restartNeeded', () => {
  const base = (extra = ''): Config => {
    const loaded = loadConfigText(
      `admin: { address: 127.0.0.1, port: 0 }
listeners:
  - { name: inbound, port: 0, routes: [{ match: { prefix: / }, cluster: app }] }
${extra}
clusters:
  - { name: app, endpoints: [127.0.0.1:9] }
`,
      'r.yaml',
    );
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    return loaded.config;
  };

  it('accepts route, cluster and drain changes; refuses listener set, listener limits, admin and accessLog changes', () => {
    const current = base();
    expect(restartNeeded(current, base('drain: { delay: 1s }'))).toEqual([]);
    const rerouted = base();
    rerouted.listeners[0]!.routes = [];
    rerouted.clusters[0]!.endpoints = [];
    expect(restartNeeded(current, rerouted)).toEqual([]);

    const added = base('  - { name: second, port: 1, routes: [{ match: { prefix: / }, cluster: app }] }');
    expect(restartNeeded(current, added)).toEqual([
      'listeners: the set of listeners (inbound, second) cannot change on reload; restart tandem to apply it',
    ]);
    const limited = base();
    limited.listeners[0]!.limits = { ...limited.listeners[0]!.limits, maxHeaders: 7 };
    expect(restartNeeded(current, limited)).toEqual([
      'listeners.inbound: address, port, limits or tls cannot change on reload; restart tandem to apply it',
    ]);
    const moved = base();
    moved.admin = { address: '127.0.0.1', port: 1 };
    moved.accessLog = { ...moved.accessLog, format: 'text' };
    expect(restartNeeded(current, moved)).toEqual([
      'admin: cannot change on reload; restart tandem to apply it',
      'accessLog: cannot change on reload; restart tandem to apply it',
    ]);
  });
});
