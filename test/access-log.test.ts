import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createAccessLog, formatText, type AccessLogEntry } from '../src/observability/access-log.js';
import { log as processLog } from '../src/observability/log.js';

const CONTRACT_FIELDS = [
  'time', 'requestId', 'traceId', 'spanId', 'clientIp', 'method', 'path', 'protocol', 'status', 'grpcStatus', 'bytesIn', 'bytesOut',
  'durationMs', 'upstreamMs', 'listener', 'route', 'cluster', 'endpoint', 'attempts', 'flags',
];

const START = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

function entry(overrides: Partial<AccessLogEntry> = {}): AccessLogEntry {
  return {
    time: START,
    requestId: '7b0f3c1e-2d4a-4f5e-9a6b-8c7d6e5f4a3b',
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: null,
    clientIp: '10.0.0.7',
    method: 'GET',
    path: '/orders/42?expand=items',
    protocol: 'HTTP/1.1',
    status: 200,
    grpcStatus: null,
    bytesIn: 0,
    bytesOut: 1234,
    durationMs: 12.5,
    upstreamMs: 11.25,
    listener: 'inbound',
    route: 'orders',
    cluster: 'orders-v2',
    endpoint: '127.0.0.1:8080',
    attempts: 1,
    flags: [],
    ...overrides,
  };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tandem-access-log-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function lines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n');
}

describe('json access log', () => {
  it('writes one line per request holding exactly the contract fields', async () => {
    const file = join(dir, 'nested', 'access.log');
    const log = createAccessLog({ format: 'json', path: file });
    log.write(entry());
    log.write(entry({
      status: 502, route: null, cluster: null, endpoint: null, upstreamMs: null,
      attempts: 3, flags: ['UF', 'URX'], method: 'POST', bytesIn: 17, protocol: 'HTTP/2', grpcStatus: 14,
    }));
    await log.flush();

    const [first, second, ...rest] = (await lines(file)).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rest).toEqual([]);
    expect(Object.keys(first!).sort()).toEqual([...CONTRACT_FIELDS].sort());
    expect(first).toEqual({ ...entry(), time: '2025-01-02T03:04:05.678Z' });
    expect(Object.keys(second!).sort()).toEqual([...CONTRACT_FIELDS].sort());
    expect(second).toMatchObject({
      status: 502, route: null, cluster: null, endpoint: null, upstreamMs: null,
      attempts: 3, flags: ['UF', 'URX'], method: 'POST', bytesIn: 17, protocol: 'HTTP/2', grpcStatus: 14,
    });
    await log.close();
  });

  it('escapes hostile request targets so every line stays one valid JSON document', async () => {
    const file = join(dir, 'access.log');
    const log = createAccessLog({ format: 'json', path: file });
    const path = '/a"b\\c\u0001\n{"x":1}';
    log.write(entry({ path }));
    await log.close();
    const all = await lines(file);
    expect(all).toHaveLength(1);
    expect((JSON.parse(all[0]!) as { path: string }).path).toBe(path);
  });

  it('flush waits for every queued line, however many', async () => {
    const file = join(dir, 'access.log');
    const log = createAccessLog({ format: 'json', path: file });
    for (let i = 0; i < 5000; i++) log.write(entry({ bytesOut: i }));
    await log.flush();
    const all = await lines(file);
    expect(all).toHaveLength(5000);
    expect((JSON.parse(all[4999]!) as { bytesOut: number }).bytesOut).toBe(4999);
    await log.close();
  });


  it('keeps the order of lines across batches, with lines larger than a batch and non-ASCII targets', async () => {
    const file = join(dir, 'access.log');
    const log = createAccessLog({ format: 'json', path: file });
    const paths: string[] = [];
    for (let i = 0; i < 400; i++) {
      // every 50th line is longer than a whole 64 KiB batch; some hold multi-byte characters
      const path = i % 50 === 7 ? `/big/${i}/${'x'.repeat(70_000)}` : i % 3 === 0 ? `/ünï/${i}/€` : `/n/${i}`;
      paths.push(path);
      log.write(entry({ path, bytesOut: i }));
      if (i % 97 === 0) await new Promise((r) => setImmediate(r));
    }
    await log.close();
    const all = (await lines(file)).map((l) => JSON.parse(l) as { path: string; bytesOut: number });
    expect(all.map((l) => l.bytesOut)).toEqual(paths.map((_, i) => i));
    expect(all.map((l) => l.path)).toEqual(paths);
  });

  it('stamps each line with the request start in ISO-8601 UTC, milliseconds included', async () => {
    const file = join(dir, 'access.log');
    const log = createAccessLog({ format: 'json', path: file });
    const times = [START, START + 1, START + 322, Date.UTC(2026, 0, 1, 0, 0, 0, 0), Date.UTC(2026, 0, 1, 0, 0, 0, 9), Date.UTC(2026, 0, 1, 0, 0, 1, 90)];
    for (const time of times) log.write(entry({ time }));
    await log.close();
    const all = (await lines(file)).map((l) => (JSON.parse(l) as { time: string }).time);
    expect(all).toEqual(times.map((t) => new Date(t).toISOString()));
  });
  it('flush covers lines queued while an earlier write is still on its way', async () => {
    const file = join(dir, 'access.log');
    const log = createAccessLog({ format: 'json', path: file });
    for (let round = 0; round < 20; round++) {
      log.write(entry({ bytesOut: round * 2 }));
      await new Promise((r) => setImmediate(r));
      log.write(entry({ bytesOut: round * 2 + 1 }));
      await log.flush();
      // read at once: an async read would give a late write time to land
      expect(readFileSync(file, 'utf8').split('\n')).toHaveLength(round * 2 + 3);
    }
    await log.close();
  });

  it('appends to an existing file', async () => {
    const file = join(dir, 'access.log');
    await writeFile(file, 'earlier\n');
    const log = createAccessLog({ format: 'json', path: file });
    log.write(entry());
    await log.close();
    const all = await lines(file);
    expect(all[0]).toBe('earlier');
    expect(all).toHaveLength(2);
  });

  it('ignores writes after close and closes only once', async () => {
    const file = join(dir, 'access.log');
    const log = createAccessLog({ format: 'json', path: file });
    log.write(entry());
    await Promise.all([log.close(), log.close()]);
    expect(() => log.write(entry())).not.toThrow();
    await log.flush();
    expect(await lines(file)).toHaveLength(1);
  });

  it('reports an unwritable destination once and keeps serving', async () => {
    const blocker = join(dir, 'not-a-dir');
    await writeFile(blocker, '');
    const reported = vi.spyOn(processLog, 'error').mockImplementation(() => {});
    try {
      const path = join(blocker, 'sub', 'access.log');
      const log = createAccessLog({ format: 'json', path });
      log.write(entry());
      await log.flush();
      log.write(entry());
      await log.close();
      expect(reported).toHaveBeenCalledTimes(1);
      const [fields] = reported.mock.calls[0] as unknown as [{ path: string; error: string }];
      expect(fields.path).toBe(path);
      expect(fields.error).toMatch(/ENOTDIR|EEXIST/);
    } finally {
      reported.mockRestore();
    }
  });
});

describe('an access log that cannot open its file', () => {
  it('lets the process exit cleanly (pino flushes non-blocking destinations at exit)', async () => {
    const blocker = join(dir, 'not-a-dir');
    await writeFile(blocker, '');
    const module = pathToFileURL(join(fileURLToPath(new URL('..', import.meta.url)), 'dist/observability/access-log.js')).href;
    const script = `
      const { createAccessLog } = await import(${JSON.stringify(module)});
      const log = createAccessLog({ format: 'json', path: ${JSON.stringify(join(blocker, 'sub', 'access.log'))} });
      await log.flush();
      await log.close();
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
    expect(run.stderr).not.toContain('sonic boom is not ready');
    expect(run.status).toBe(0);
  });
});

describe('text access log', () => {
  it('formats the common-log-like line', () => {
    expect(formatText(entry())).toBe(
      '10.0.0.7 - - [2025-01-02T03:04:05.678Z] "GET /orders/42?expand=items HTTP/1.1" 200 1234 12.5ms ' +
        'route=orders cluster=orders-v2 endpoint=127.0.0.1:8080 attempts=1 flags=- ' +
        'grpc=- rid=7b0f3c1e-2d4a-4f5e-9a6b-8c7d6e5f4a3b span=-\n',
    );
    expect(formatText(entry({
      route: null, cluster: null, endpoint: null, status: 404, bytesOut: 0, flags: ['NR'], path: '/x"y',
    }))).toBe(
      '10.0.0.7 - - [2025-01-02T03:04:05.678Z] "GET /x\\"y HTTP/1.1" 404 0 12.5ms ' +
        'route=- cluster=- endpoint=- attempts=1 flags=NR grpc=- rid=7b0f3c1e-2d4a-4f5e-9a6b-8c7d6e5f4a3b span=-\n',
    );
  });

  it('writes the HTTP version in the request line and the grpc-status of a gRPC request', () => {
    expect(formatText(entry({ method: 'POST', path: '/helloworld.Greeter/SayHello', protocol: 'HTTP/2', grpcStatus: 14, flags: ['UF'], status: 200 }))).toBe(
      '10.0.0.7 - - [2025-01-02T03:04:05.678Z] "POST /helloworld.Greeter/SayHello HTTP/2" 200 1234 12.5ms ' +
        'route=orders cluster=orders-v2 endpoint=127.0.0.1:8080 attempts=1 flags=UF grpc=14 rid=7b0f3c1e-2d4a-4f5e-9a6b-8c7d6e5f4a3b span=-\n',
    );
    expect(formatText(entry({ protocol: 'HTTP/1.0', grpcStatus: 0 }))).toContain('"GET /orders/42?expand=items HTTP/1.0" 200 1234 12.5ms ');
    expect(formatText(entry({ protocol: 'HTTP/1.0', grpcStatus: 0 }))).toContain(' flags=- grpc=0 rid=');
  });

  it('ends with the SERVER span id of a traced request', () => {
    expect(formatText(entry({ spanId: '00f067aa0ba902b7' }))).toMatch(/ rid=7b0f3c1e-2d4a-4f5e-9a6b-8c7d6e5f4a3b span=00f067aa0ba902b7\n$/);
  });

  it('a request refused before its head was parsed has `-` for its method and path', () => {
    expect(formatText(entry({
      method: '', path: '', route: null, cluster: null, endpoint: null, upstreamMs: null, status: 400, bytesOut: 0, attempts: 0, flags: ['DPE'],
    }))).toBe(
      '10.0.0.7 - - [2025-01-02T03:04:05.678Z] "- - HTTP/1.1" 400 0 12.5ms ' +
        'route=- cluster=- endpoint=- attempts=0 flags=DPE grpc=- rid=7b0f3c1e-2d4a-4f5e-9a6b-8c7d6e5f4a3b span=-\n',
    );
  });

  it('writes those lines to the destination', async () => {
    const file = join(dir, 'access.log');
    const log = createAccessLog({ format: 'text', path: file });
    log.write(entry({ attempts: 2, flags: ['UF', 'URX'], status: 502 }));
    log.write(entry());
    await log.flush();
    const all = await lines(file);
    expect(all).toHaveLength(2);
    expect(all[0]).toBe(formatText(entry({ attempts: 2, flags: ['UF', 'URX'], status: 502 })).trimEnd());
    expect(all[0]).toContain(' 502 1234 12.5ms ');
    expect(all[0]).toContain(' attempts=2 flags=UF,URX ');
    await log.close();
  });
});

describe('access log off', () => {
  it('writes nothing and creates no file', async () => {
    const file = join(dir, 'access.log');
    const log = createAccessLog({ format: 'off', path: file });
    log.write(entry());
    await log.flush();
    await log.close();
    expect(existsSync(file)).toBe(false);
  });
});
