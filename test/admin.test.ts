import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startAdmin, type AdminServer, type AdminState } from '../src/admin/server.js';
import { Metrics } from '../src/observability/metrics.js';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function call(port: number, method: string, path: string, agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent: agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const metrics = new Metrics();

interface TestState extends AdminState {
  isReady: boolean;
  quits: number;
}

function state(overrides: Partial<AdminState> = {}): TestState {
  const s: TestState = {
    isReady: true,
    quits: 0,
    ready: () => s.isReady,
    configView: () => ({ version: 3, loadedAt: '2025-01-02T03:04:05.000Z', config: { admin: { address: '127.0.0.1', port: 9901 } } }),
    clustersView: async () => [
      { name: 'app', breaker: 'closed', endpoints: [{ address: '127.0.0.1', port: 8080, healthy: true, ejected: false, activeRequests: 0 }] },
    ],
    metrics,
    quit: () => {
      s.quits++;
    },
    ...overrides,
  };
  return s;
}

const servers: AdminServer[] = [];
async function start(s: AdminState): Promise<AdminServer> {
  const server = await startAdmin('127.0.0.1', 0, s);
  servers.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('admin read endpoints', () => {
  it('answers /ready with 200 ready, and 503 not ready while starting or draining', async () => {
    const s = state();
    const { port } = await start(s);
    const ready = await call(port, 'GET', '/ready');
    expect(ready).toMatchObject({ status: 200, body: 'ready' });
    expect(ready.headers['content-type']).toMatch(/^text\/plain/);
    s.isReady = false;
    expect(await call(port, 'GET', '/ready')).toMatchObject({ status: 503, body: 'not ready' });
  });

  it('answers /live with 200 live', async () => {
    const { port } = await start(state({ ready: () => false }));
    expect(await call(port, 'GET', '/live')).toMatchObject({ status: 200, body: 'live' });
  });

  it('serves Prometheus text on /metrics', async () => {
    const m = new Metrics();
    m.route('inbound', 'api').request(201, 0.002);
    const { port } = await start(state({ metrics: m }));
    const reply = await call(port, 'GET', '/metrics');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(reply.body).toContain('tandem_requests_total{listener="inbound",route="api",code="201"} 1');
    expect(reply.body).toMatch(/^tandem_process_cpu_user_seconds_total \d/m);
  });

  it('serves /config and /clusters as JSON', async () => {
    const s = state();
    const { port } = await start(s);
    const config = await call(port, 'GET', '/config');
    expect(config.status).toBe(200);
    expect(config.headers['content-type']).toBe('application/json');
    expect(JSON.parse(config.body)).toEqual(s.configView());
    const clusters = await call(port, 'GET', '/clusters');
    expect(clusters.status).toBe(200);
    expect(clusters.headers['content-type']).toBe('application/json');
    expect(JSON.parse(clusters.body)).toEqual(await s.clustersView());
  });

  it('answers HEAD like GET without a body', async () => {
    const { port } = await start(state());
    const head = await call(port, 'HEAD', '/ready');
    expect(head).toMatchObject({ status: 200, body: '' });
    expect(head.headers['content-length']).toBe('5');
    const config = await call(port, 'HEAD', '/config');
    expect(config.status).toBe(200);
    expect(Number(config.headers['content-length'])).toBe(JSON.stringify(state().configView()).length);
    expect(config.body).toBe('');
  });

  it('ignores the query string', async () => {
    const { port } = await start(state());
    expect(await call(port, 'GET', '/ready?verbose=1')).toMatchObject({ status: 200, body: 'ready' });
  });

  it('answers 404 to an unknown path', async () => {
    const { port } = await start(state());
    const reply = await call(port, 'GET', '/stats');
    expect(reply.status).toBe(404);
    expect(reply.headers['content-type']).toBe('application/json');
    expect(JSON.parse(reply.body)).toEqual({ error: 'not_found' });
    expect((await call(port, 'GET', '/ready/')).status).toBe(404);
  });

  it('answers 405 with allow: GET, HEAD to other methods', async () => {
    const { port } = await start(state());
    for (const [method, path] of [['POST', '/ready'], ['DELETE', '/config'], ['PUT', '/metrics'], ['POST', '/live']] as const) {
      const reply = await call(port, method, path);
      expect(reply.status, `${method} ${path}`).toBe(405);
      expect(reply.headers.allow).toBe('GET, HEAD');
      expect(JSON.parse(reply.body)).toEqual({ error: 'method_not_allowed' });
    }
  });

  it('answers 500 when a view fails', async () => {
    const m = new Metrics();
    vi.spyOn(m, 'render').mockRejectedValue(new Error('collector broke'));
    const { port } = await start(state({ metrics: m, clustersView: () => { throw new Error('no clusters yet'); } }));
    const metricsReply = await call(port, 'GET', '/metrics');
    expect(metricsReply.status).toBe(500);
    expect(JSON.parse(metricsReply.body)).toEqual({ error: 'internal', message: 'collector broke' });
    const clusters = await call(port, 'GET', '/clusters');
    expect(clusters.status).toBe(500);
    expect(JSON.parse(clusters.body)).toEqual({ error: 'internal', message: 'no clusters yet' });
  });
});

describe('admin state-changing endpoints', () => {
  it('answers 405 with allow: POST to GET, and does not act', async () => {
    const s = state({ reload: vi.fn(async () => ({ ok: true as const, version: 9 })) });
    const { port } = await start(s);
    for (const path of ['/reload', '/quitquitquit']) {
      const reply = await call(port, 'GET', path);
      expect(reply.status, path).toBe(405);
      expect(reply.headers.allow).toBe('POST');
    }
    expect((await call(port, 'HEAD', '/reload')).status).toBe(405);
    expect(s.quits).toBe(0);
    expect(s.reload).not.toHaveBeenCalled();
  });

  it('answers POST /reload with 501 when reload is not wired', async () => {
    const { port } = await start(state());
    const reply = await call(port, 'POST', '/reload');
    expect(reply.status).toBe(501);
    expect(reply.headers['content-type']).toBe('application/json');
    expect(JSON.parse(reply.body)).toEqual({ error: 'not_implemented' });
  });

  it('answers POST /reload with the new version, or 400 and the errors', async () => {
    let outcome: Awaited<ReturnType<NonNullable<AdminState['reload']>>> = { ok: true, version: 4 };
    const { port } = await start(state({ reload: async () => outcome }));
    const ok = await call(port, 'POST', '/reload');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ version: 4 });

    outcome = { ok: false, errors: ['tandem.yaml:3:5: listeners.0.port: expected a number'] };
    const bad = await call(port, 'POST', '/reload');
    expect(bad.status).toBe(400);
    expect(bad.headers['content-type']).toBe('application/json');
    expect(JSON.parse(bad.body)).toEqual({ errors: ['tandem.yaml:3:5: listeners.0.port: expected a number'] });
  });

  it('answers 500 when reload itself throws', async () => {
    const { port } = await start(state({ reload: () => Promise.reject(new Error('EACCES: tandem.yaml')) }));
    const reply = await call(port, 'POST', '/reload');
    expect(reply.status).toBe(500);
    expect(JSON.parse(reply.body)).toEqual({ error: 'internal', message: 'EACCES: tandem.yaml' });
  });

  it('answers POST /quitquitquit with 200, then starts the drain once', async () => {
    const s = state();
    const { port } = await start(s);
    // A kept-alive connection stays open after the answer: quit must not wait for it.
    const agent = new Agent({ keepAlive: true });
    try {
      const reply = await call(port, 'POST', '/quitquitquit', agent);
      expect(reply).toMatchObject({ status: 200, body: 'draining' });
      for (let i = 0; i < 50 && s.quits === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(s.quits).toBe(1);
    } finally {
      agent.destroy();
    }
  });
});

describe('admin lifecycle', () => {
  it('names the address and port when it cannot bind', async () => {
    const first = await start(state());
    await expect(startAdmin('127.0.0.1', first.port, state())).rejects.toThrow(
      `cannot bind admin 127.0.0.1:${first.port}: EADDRINUSE`,
    );
  });

  it('closes with a keep-alive connection open, and closing twice is harmless', async () => {
    const server = await startAdmin('127.0.0.1', 0, state());
    const agent = new Agent({ keepAlive: true });
    try {
      expect((await call(server.port, 'GET', '/live', agent)).status).toBe(200);
      await Promise.all([server.close(), server.close()]);
      await expect(call(server.port, 'GET', '/live')).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      agent.destroy();
    }
  });

  it('lets an in-flight answer finish on close, then closes its keep-alive connection', async () => {
    let reloadStarted!: () => void;
    const started = new Promise<void>((r) => (reloadStarted = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const reload = async () => {
      reloadStarted();
      await gate;
      return { ok: true as const, version: 2 };
    };
    const server = await startAdmin('127.0.0.1', 0, state({ reload }));
    const agent = new Agent({ keepAlive: true });
    try {
      const pending = call(server.port, 'POST', '/reload', agent);
      await started;
      const closed = server.close();
      release();
      const reply = await pending;
      expect(reply.status).toBe(200);
      expect(reply.headers.connection).toBe('close');
      expect(JSON.parse(reply.body)).toEqual({ version: 2 });
      const t0 = Date.now();
      await closed;
      expect(Date.now() - t0).toBeLessThan(1000);
    } finally {
      agent.destroy();
    }
  });
});
