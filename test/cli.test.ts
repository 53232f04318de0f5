// The command line (CONTRACT §1) as users run it: the built dist/cli.js in a
// child process, on the Node binary running these tests. Needs
// `npm run build` first.

import { existsSync, readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, spawnTandem, startUpstream, writeTempFile, type TandemProcess, type Upstream } from './support/harness.js';

let procs: TandemProcess[] = [];
let servers: (net.Server | Upstream)[] = [];
afterEach(async () => {
  for (const p of procs) p.kill();
  await Promise.all(procs.map((p) => p.exited));
  await Promise.all(servers.map((s) => ('port' in s ? s.close() : new Promise<void>((resolve) => s.close(() => resolve())))));
  procs = [];
  servers = [];
});

beforeAll(() => {
  if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run "npm run build" first`);
});

function cli(args: string[], env: Record<string, string | undefined> = {}): TandemProcess {
  const p = spawnTandem(args, env);
  procs.push(p);
  return p;
}

/** Runs a command that ends by itself; `code` is its exit code. */
async function run(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = cli(args, env);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

const GOOD = `
admin: { address: 127.0.0.1, port: 0 }
accessLog: { format: off }
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - match: { prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:8080]
`;

// two errors: an undefined cluster (line 8, at the value) and a misspelt key (line 9, at the key)
const BAD = `admin: { address: 127.0.0.1, port: 0 }
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - match: { prefix: / }
        cluster: nope
        timout: 5s
clusters:
  - name: app
    endpoints: [127.0.0.1:8080]
`;

const ERROR_LINE = /^(.+):(\d+):(\d+): ([\w.()]+): (.+)$/;

describe('usage', () => {
  it('--version prints the package version, exit 0', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    const r = await run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`tandem ${pkg.version}`);
  });

  it('--help and -h print the usage, exit 0', async () => {
    for (const r of await Promise.all([run(['--help']), run(['-h'])])) {
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('Usage:');
      expect(r.stdout).toContain('validate FILE');
      expect(r.stdout).toContain('--config FILE');
    }
  });

  it('an unknown flag, an unknown command or a wrong validate call: exit 2 with the usage on stderr', async () => {
    const calls = [['--bogus'], ['frobnicate'], ['validate'], ['validate', 'a.yaml', 'b.yaml'], ['demo', 'extra']];
    const results = await Promise.all(calls.map((args) => run(args)));
    results.forEach((r, i) => {
      expect(r.code, calls[i]!.join(' ')).toBe(2);
      expect(r.stderr).toContain('Usage:');
      expect(r.stdout).toBe('');
    });
    expect(results[0]!.stderr).toContain('--bogus');
    expect(results[1]!.stderr).toContain('frobnicate');
  });
});

describe('validate', () => {
  it('a good file prints exactly "ok", exit 0', async () => {
    const r = await run(['validate', writeTempFile(GOOD)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ok\n');
    expect(r.stderr).toBe('');
  });

  it('a bad file prints every error as FILE:LINE:COL: path: message, exit 1', async () => {
    const file = writeTempFile(BAD);
    const r = await run(['validate', file]);
    expect(r.code).toBe(1);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line).toMatch(ERROR_LINE);
    const parsed = lines.map((l) => ERROR_LINE.exec(l)!.slice(1));
    expect(parsed[0]).toEqual([file, '8', '18', 'listeners.0.routes.0.cluster', expect.stringContaining('nope')]);
    expect(parsed[1]).toEqual([file, '9', '9', 'listeners.0.routes.0.timout', expect.stringContaining('timeout')]);
  });

  it('a YAML syntax error and a missing file are positioned errors too, exit 1', async () => {
    const syntax = writeTempFile('listeners: [\n');
    const r1 = await run(['validate', syntax]);
    expect(r1.code).toBe(1);
    expect(r1.stdout).toMatch(new RegExp(`^${syntax}:\\d+:\\d+: `));
    const missing = `${syntax}.missing`;
    const r2 = await run(['validate', missing]);
    expect(r2.code).toBe(1);
    expect(r2.stdout.trimEnd()).toMatch(ERROR_LINE);
    expect(r2.stdout.startsWith(`${missing}:`)).toBe(true);
  });
});

describe('run', () => {
  it('--config with an invalid file: exit 1, the same lines as validate on stderr', async () => {
    const file = writeTempFile(BAD);
    const validated = await run(['validate', file]);
    for (const flag of ['--config', '-c']) {
      const r = await run([flag, file]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(validated.stdout);
    }
  });

  it('TANDEM_CONFIG is the fallback, and --config wins over it', async () => {
    const bad = writeTempFile(BAD);
    const r = await run([], { TANDEM_CONFIG: bad });
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toMatch(new RegExp(`^${bad}:8:18: `));

    const up = await startUpstream();
    servers.push(up);
    const good = writeTempFile(GOOD.replace('127.0.0.1:8080', `127.0.0.1:${up.port}`));
    const viaEnv = cli([], { TANDEM_CONFIG: good });
    const { listeners } = await viaEnv.ready();
    const res = await fetch(`http://127.0.0.1:${listeners.inbound}/x`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok');

    const viaFlag = cli(['--config', good], { TANDEM_CONFIG: bad });
    expect((await viaFlag.ready()).listeners.inbound).toBeGreaterThan(0);
  });

  it('a listener port already in use: exit 1, the message names address and port', async () => {
    const blocker = net.createServer();
    servers.push(blocker);
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    const r = await run(['--config', writeTempFile(GOOD.replace('    port: 0\n    routes', `    port: ${port}\n    routes`))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`127.0.0.1:${port}`);
    expect(r.stderr).toContain('EADDRINUSE');
    expect(r.stderr).toContain('inbound');
  });

  it('an admin port already in use: exit 1, the message names it', async () => {
    const blocker = net.createServer();
    servers.push(blocker);
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    // an access log to a file still opening when start fails must close cleanly too
    const config = GOOD.replace('port: 0 }', `port: ${port} }`).replace(
      'accessLog: { format: off }',
      `accessLog: { format: json, path: ${writeTempFile('', 'access.log')} }`,
    );
    const r = await run(['--config', writeTempFile(config)]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`tandem: cannot bind admin 127.0.0.1:${port}: EADDRINUSE`);
  });

  it('SIGTERM and SIGINT end a running tandem with exit 0', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const p = cli(['--config', writeTempFile(GOOD)]);
      const { admin } = await p.ready();
      expect((await fetch(`http://127.0.0.1:${admin}/ready`)).status).toBe(200);
      p.child.kill(signal);
      expect(await p.exited, signal).toBe(0);
    }
  });

  it('the embedded default: inbound on 15000, admin on 9901', async (ctx) => {
    ctx.skip(!(await portsFree([15000, 9901])), 'ports 15000 or 9901 are in use on this machine');
    const p = cli([]);
    const { listeners, admin } = await p.ready();
    expect(listeners).toEqual({ inbound: 15000 });
    expect(admin).toBe(9901);
    expect((await fetch('http://127.0.0.1:9901/ready')).status).toBe(200);
    const view = (await (await fetch('http://127.0.0.1:9901/config')).json()) as {
      config: { listeners: { address: string; port: number }[]; clusters: { name: string; endpoints: unknown[] }[] };
    };
    expect(view.config.listeners[0]).toMatchObject({ address: '0.0.0.0', port: 15000 });
    expect(view.config.clusters[0]).toMatchObject({ name: 'app' });
    expect(JSON.stringify(view.config.clusters[0]!.endpoints)).toContain('8080');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });
});

/** True when every port can be bound on all interfaces right now. */
async function portsFree(ports: number[]): Promise<boolean> {
  for (const port of ports) {
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '0.0.0.0', () => s.close(() => resolve(true)));
    });
    if (!free) return false;
  }
  return true;
}
