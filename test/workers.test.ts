// workers > 1 (CONTRACT §12, docs/workers.md): worker threads serving the
// same ports, one admin API, metrics summed, one access log, reload and
// drain applied to all, a crashed worker replaced.

import http from 'node:http';
import net from 'node:net';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Tandem } from '../src/tandem.js';
import { cpuQuota, workerCount } from '../src/workers/count.js';
import {
  eventually,
  metricValue,
  spawnTandem,
  writeTempFile,
  startFromFile,
  startTandem,
  startUpstream,
  tempDir,
  useCleanup,
  type RunningTandem,
  type Upstream,
} from './support/harness.js';
import { h2cClient } from './support/client.js';

const cleanup = useCleanup();

/** One keep-alive connection: every request of it goes over the same socket. */
interface Connection {
  get(path: string): Promise<{ status: number; body: string }>;
  close(): void;
}

function connection(port: number): Connection {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return {
    get: (path) =>
      new Promise((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path, agent }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode!, body }));
            res.on('error', reject);
          })
          .on('error', reject);
      }),
    close: () => agent.destroy(),
  };
}

/** `count` connections, each opened and used once (so the kernel has placed it on a worker). */
async function openConnections(port: number, count: number, path = '/'): Promise<Connection[]> {
  const all = Array.from({ length: count }, () => connection(port));
  cleanup.add({ close: async () => all.forEach((c) => c.close()) });
  const answers = await Promise.all(all.map((c) => c.get(path)));
  expect(answers.map((a) => a.status)).toEqual(all.map(() => 200));
  return all;
}

async function upstream(delayMs = 0): Promise<Upstream> {
  const up = await startUpstream((req, res) => {
    setTimeout(() => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`up ${req.url}`);
    }, delayMs);
  });
  cleanup.add(up);
  return up;
}

function workersYaml(upstreamPort: number, extra = ''): string {
  return `
workers: 2
${extra}
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - { name: all, match: { prefix: / }, cluster: app }
clusters:
  - name: app
    endpoints: [127.0.0.1:${upstreamPort}]
`;
}

async function start(yaml: string): Promise<RunningTandem> {
  const t = await startTandem(yaml);
  cleanup.add(t);
  return t;
}

/** The worker threads of a running tandem (tests reach into it to end one the way a crash would). */
function threads(tandem: Tandem): Array<{ worker: { terminate(): Promise<number> }; listening: Promise<unknown> }> {
  return (tandem as unknown as { fleet: { workers: never[] } }).fleet.workers;
}

describe('workers: auto', () => {
  it('is the CPU quota rounded up, capped by the CPUs, else the CPUs', () => {
    expect(workerCount(3, 1, 8)).toBe(3);
    expect(workerCount('auto', 1.5, 8)).toBe(2);
    expect(workerCount('auto', 2, 8)).toBe(2);
    expect(workerCount('auto', 0.25, 8)).toBe(1);
    expect(workerCount('auto', 16, 4)).toBe(4);
    expect(workerCount('auto', null, 6)).toBe(6);
  });

  it('reads cgroup v2 cpu.max and v1 cfs files; no limit is null', () => {
    const v2 = tempDir('tandem-cgroup-');
    writeFileSync(join(v2, 'cpu.max'), '150000 100000\n');
    expect(cpuQuota(v2)).toBe(1.5);
    writeFileSync(join(v2, 'cpu.max'), 'max 100000\n');
    expect(cpuQuota(v2)).toBeNull();
    const v1 = tempDir('tandem-cgroup-');
    mkdirSync(join(v1, 'cpu'));
    writeFileSync(join(v1, 'cpu', 'cpu.cfs_quota_us'), '250000\n');
    writeFileSync(join(v1, 'cpu', 'cpu.cfs_period_us'), '100000\n');
    expect(cpuQuota(v1)).toBe(2.5);
    writeFileSync(join(v1, 'cpu', 'cpu.cfs_quota_us'), '-1\n');
    expect(cpuQuota(v1)).toBeNull();
    expect(cpuQuota(tempDir('tandem-cgroup-'))).toBeNull();
  });
});

describe('workers: 2', () => {
  it('serves one port from two threads, one metrics view summed over them', async () => {
    const up = await upstream();
    const t = await start(workersYaml(up.port));
    expect(t.port).toBeGreaterThan(0);
    expect(t.tandem.listeners).toEqual([]);
    const conns = await openConnections(t.port, 24, '/a');
    await Promise.all(conns.map((c) => c.get('/b')));
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { listener: 'inbound', route: 'all', code: '200' })).toBe(48);
    expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '200' })).toBe(48);
    expect(await metricValue(t.adminUrl, 'tandem_request_duration_seconds_count', { listener: 'inbound', route: 'all' })).toBe(48);
    // process series once, from the main thread, not once per worker
    const text = await (await fetch(`${t.adminUrl}/metrics`)).text();
    expect(text.match(/^tandem_process_resident_memory_bytes /gm)).toHaveLength(1);
    const ready = await fetch(`${t.adminUrl}/ready`);
    expect(ready.status).toBe(200);
  });

  it('spreads connections over both threads: ending one cuts only its own requests in flight', async () => {
    const up = await upstream(300);
    const t = await start(workersYaml(up.port));
    const conns = await openConnections(t.port, 24);
    const inFlight = Promise.allSettled(conns.map((c) => c.get('/slow')));
    await new Promise((r) => setTimeout(r, 100));
    await threads(t.tandem)[0]!.worker.terminate();
    const after = await inFlight;
    const ok = after.filter((r) => r.status === 'fulfilled' && r.value.status === 200).length;
    expect(ok).toBeGreaterThan(0);
    expect(ok).toBeLessThan(conns.length);
  });

  it('writes one access log with every request on a line of its own', async () => {
    const up = await upstream();
    const t = await start(workersYaml(up.port));
    const conns = await openConnections(t.port, 16);
    const long = 'x'.repeat(3000);
    for (let round = 0; round < 10; round++) await Promise.all(conns.map((c, i) => c.get(`/${round}/${i}/${long}`)));
    const lines = await t.accessLog();
    // 16 warm-up requests, then 160 with long paths; each line parsed whole as JSON
    expect(lines).toHaveLength(176);
    const paths = new Set(lines.map((l) => l.path));
    for (let round = 0; round < 10; round++) for (let i = 0; i < 16; i++) expect(paths.has(`/${round}/${i}/${long}`)).toBe(true);
  });

  it('replaces a worker that ended without being asked; the other keeps its connections', async () => {
    const up = await upstream();
    const t = await start(workersYaml(up.port));
    const conns = await openConnections(t.port, 24);
    const [first] = threads(t.tandem);
    await first!.worker.terminate();
    const after = await Promise.allSettled(conns.map((c) => c.get('/again')));
    expect(after.some((r) => r.status === 'fulfilled' && r.value.status === 200)).toBe(true);
    // a new thread takes the slot and binds beside the survivor
    expect(await eventually(() => threads(t.tandem)[0] !== first, 5000)).toBe(true);
    await threads(t.tandem)[0]!.listening;
    // with the other one gone too, the replacement alone answers new connections
    await threads(t.tandem)[1]!.worker.terminate();
    expect((await fetch(`${t.adminUrl}/ready`)).status).toBe(200);
    const fresh = await openConnections(t.port, 8, '/fresh');
    expect(fresh).toHaveLength(8);
    expect((await fetch(`${t.adminUrl}/ready`)).status).toBe(200);
  });

  it('answers /metrics, /clusters and POST /reload while a crashed worker waits for its replacement', async () => {
    const up = await upstream();
    const dir = tempDir('tandem-workers-');
    const file = join(dir, 'tandem.yaml');
    writeFileSync(file, workersYaml(up.port, 'accessLog: { format: off }'));
    const tandem = await startFromFile(file, (x) => cleanup.add(x));
    const admin = `http://127.0.0.1:${tandem.adminPort}`;
    const dead = threads(tandem)[0]!;
    await dead.worker.terminate();
    // within the replacement's back-off: the dead thread must not be waited for
    expect(threads(tandem)[0]).toBe(dead);
    const within = AbortSignal.timeout(2000);
    expect((await fetch(`${admin}/metrics`, { signal: within })).status).toBe(200);
    expect((await fetch(`${admin}/clusters`, { signal: within })).status).toBe(200);
    writeFileSync(file, workersYaml(up.port, 'accessLog: { format: off }').replace('cluster: app }', 'directResponse: { status: 200, body: two } }'));
    const reload = await fetch(`${admin}/reload`, { method: 'POST', signal: within });
    expect(await reload.json()).toEqual({ version: 2 });
    // the replacement starts from the configuration of now, and serves it
    expect(await eventually(() => threads(tandem)[0] !== dead, 5000)).toBe(true);
    await threads(tandem)[0]!.listening;
    const conns = await openConnections(tandem.boundListeners[0]!.port, 8);
    const bodies = await Promise.all(conns.map((c) => c.get('/')));
    expect(bodies.map((b) => b.body)).toEqual(conns.map(() => 'two'));
  });

  it('applies a reload in every worker before POST /reload answers', async () => {
    const up = await upstream();
    const dir = tempDir('tandem-workers-');
    const file = join(dir, 'tandem.yaml');
    const direct = (body: string): string => `
workers: 2
accessLog: { format: off }
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - { name: d, match: { prefix: / }, directResponse: { status: 200, body: ${body} } }
clusters:
  - name: app
    endpoints: [127.0.0.1:${up.port}]
`;
    writeFileSync(file, direct('one'));
    const tandem = await startFromFile(file, (x) => cleanup.add(x));
    const port = tandem.boundListeners[0]!.port;
    const before = await openConnections(port, 16);
    expect((await before[0]!.get('/')).body).toBe('one');
    writeFileSync(file, direct('two'));
    const res = await fetch(`http://127.0.0.1:${tandem.adminPort}/reload`, { method: 'POST' });
    expect(await res.json()).toEqual({ version: 2 });
    const bodies = await Promise.all(before.map((c) => c.get('/')));
    expect(bodies.map((b) => b.body)).toEqual(before.map(() => 'two'));
    const config = (await (await fetch(`http://127.0.0.1:${tandem.adminPort}/config`)).json()) as { version: number };
    expect(config.version).toBe(2);
  });

  it('drains every worker: not ready, in-flight requests finish, then every thread ends', async () => {
    const up = await upstream(400);
    const t = await start(workersYaml(up.port, 'drain: { delay: 0s, timeout: 5s }'));
    const conns = await openConnections(t.port, 12);
    const inFlight = Promise.all(conns.map((c) => c.get('/slow')));
    await new Promise((r) => setTimeout(r, 100));
    const draining = t.tandem.drain();
    expect((await fetch(`${t.adminUrl}/ready`)).status).toBe(503);
    const answers = await inFlight;
    expect(answers.map((a) => a.status)).toEqual(conns.map(() => 200));
    await draining;
    await t.tandem.finished;
    // nothing listens any more
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(t.port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(false)));
      s.once('error', () => resolve(true));
    });
    expect(refused).toBe(true);
  });

  it('fails to start, naming the listener, when its port is taken by a socket without SO_REUSEPORT', async () => {
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    cleanup.add({ close: () => new Promise<void>((resolve) => squatter.close(() => resolve())) });
    const port = (squatter.address() as net.AddressInfo).port;
    const up = await upstream();
    await expect(startTandem(workersYaml(up.port).replace('port: 0', `port: ${port}`))).rejects.toThrow(
      `cannot bind listener "inbound" on 127.0.0.1:${port}`,
    );
  });

  it('runs from the command line: h2c and HTTP/1.1 on the workers, SIGHUP reloads all, SIGTERM drains and exits 0', async () => {
    const up = await upstream();
    const file = writeTempFile(`
workers: 2
admin: { address: 127.0.0.1, port: 0 }
accessLog: { format: text, path: stdout }
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    protocols: [http1, h2c]
    routes:
      - { name: all, match: { prefix: / }, cluster: app }
clusters:
  - name: app
    endpoints: [127.0.0.1:${up.port}]
`);
    const p = spawnTandem(['--config', file]);
    cleanup.add({ close: async () => p.kill() });
    const { listeners } = await p.ready(10_000);
    const port = listeners.inbound!;
    await openConnections(port, 8, '/one');
    const answer = await h2cClient(cleanup).request(`http://127.0.0.1:${port}/over-h2`);
    expect(answer.statusCode).toBe(200);
    expect(await answer.body.text()).toBe('up /over-h2');
    writeFileSync(file, readFileSync(file, 'utf8').replace('{ name: all, match: { prefix: / }, cluster: app }', '{ name: all, match: { prefix: / }, directResponse: { status: 202 } }'));
    p.child.kill('SIGHUP');
    expect(await eventually(() => p.stderr().includes('"configuration reloaded"'), 5000)).toBe(true);
    const after = await Promise.all(Array.from({ length: 8 }, () => connection(port)).map((c) => c.get('/two').finally(() => c.close())));
    expect(after.map((a) => a.status)).toEqual(after.map(() => 202));
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    // one text line per request, whole, from both workers
    const lines = p.stdout().trim().split('\n');
    expect(lines).toHaveLength(17);
    for (const line of lines) expect(line).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "GET \/\S+ HTTP\/(1\.1|2)" 20[02] /);
  });
});

describe('workers: 2 hold limits for the tandem as a whole', () => {
  /** An upstream that answers `status` after `delayMs`, counting what reached it. */
  async function counting(status: number, delayMs: number): Promise<Upstream & { seen(): number }> {
    let seen = 0;
    const up = await startUpstream((_req, res) => {
      seen++;
      setTimeout(() => {
        if (res.destroyed) return;
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end('x');
      }, delayMs);
    });
    cleanup.add(up);
    return Object.assign(up, { seen: () => seen });
  }

  function yaml(upstreamPort: number, route: string, cluster: string): string {
    return `
workers: 2
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - name: all
        match: { prefix: / }
        cluster: app
        ${route}
clusters:
  - name: app
    endpoints: [127.0.0.1:${upstreamPort}]
    ${cluster}
`;
  }

  /** One GET on each of `count` fresh connections, all at once: the kernel spreads them over both workers. */
  async function burst(port: number, count: number, path = '/'): Promise<number[]> {
    const conns = Array.from({ length: count }, () => connection(port));
    cleanup.add({ close: async () => conns.forEach((c) => c.close()) });
    const answers = await Promise.all(conns.map((c) => c.get(path)));
    return answers.map((a) => a.status).sort();
  }

  it('circuitBreaker.maxRequests: 2 admits two requests in flight across both workers', async () => {
    const up = await counting(200, 500);
    const t = await start(yaml(up.port, '', 'circuitBreaker: { maxRequests: 2 }'));
    const statuses = await burst(t.port, 16);
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.filter((s) => s === 503)).toHaveLength(14);
    expect(up.seen()).toBe(2);
    expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_rejections_total', { cluster: 'app', reason: 'overflow' })).toBe(14);
  });

  it('a route rate limit of burst 4 admits 4 requests across both workers', async () => {
    const up = await counting(200, 0);
    const t = await start(yaml(up.port, 'rateLimit: { requestsPerSecond: 0.001, burst: 4, key: route }', ''));
    const statuses = await burst(t.port, 16);
    expect(statuses.filter((s) => s === 200)).toHaveLength(4);
    expect(statuses.filter((s) => s === 429)).toHaveLength(12);
    expect(up.seen()).toBe(4);
  });

  it('failures seen by either worker open the one breaker for both', async () => {
    const up = await counting(503, 0);
    const t = await start(yaml(up.port, '', 'circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 6, window: 30s, resetTimeout: 30s }'));
    // six failures over both workers, a few at a time: none of them alone reaches the volume
    for (let i = 0; i < 3; i++) expect(await burst(t.port, 2)).toEqual([503, 503]);
    expect(up.seen()).toBe(6);
    const after = await burst(t.port, 16);
    expect(after).toEqual(after.map(() => 503));
    expect(up.seen()).toBe(6);
    expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_rejections_total', { cluster: 'app', reason: 'open' })).toBe(16);
    expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' })).toBe(1);
    const clusters = (await (await fetch(`${t.adminUrl}/clusters`)).json()) as Array<{ breaker: string }>;
    expect(clusters[0]!.breaker).toBe('open');
  });

  it('gives the places a crashed worker held in maxRequests back to its replacement', async () => {
    const up = await counting(200, 1500);
    const t = await start(yaml(up.port, '', 'circuitBreaker: { maxRequests: 2 }'));
    const held = burst(t.port, 8).catch(() => []);
    expect(await eventually(() => up.seen() === 2, 2000)).toBe(true);
    // both slots replaced: whichever held the two places, they are free again
    for (const i of [0, 1]) {
      const before = threads(t.tandem)[i]!;
      await before.worker.terminate();
      expect(await eventually(() => threads(t.tandem)[i] !== before, 5000)).toBe(true);
      await threads(t.tandem)[i]!.listening;
    }
    await held;
    const statuses = await burst(t.port, 8);
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(up.seen()).toBe(4);
  });
});
