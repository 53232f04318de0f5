// Routing over real sockets (CONTRACT §2): each upstream answers with its
// own name, so the body says which route (and which cluster) was chosen.

import { describe, expect, it } from 'vitest';
import { simpleConfig, startTandem, startUpstream, useCleanup, type RunningTandem, type Upstream } from './support/harness.js';
import { clientFor, PROTOCOLS } from './support/client.js';

const cleanup = useCleanup();
let t: RunningTandem | undefined;

/** An upstream whose body is its name. */
async function named(name: string): Promise<Upstream> {
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', server: 'app-server', 'x-upstream': name });
    res.end(name);
  });
  cleanup.add(up);
  return up;
}

/** Upstreams `a` and `b`, one cluster each, and the given routes (YAML list items, indented by 6). */
async function twoClusters(routesYaml: string): Promise<{ a: Upstream; b: Upstream }> {
  const a = await named('a');
  const b = await named('b');
  t = cleanup.add(await startTandem(`
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
${routesYaml}
clusters:
  - name: ca
    endpoints: [127.0.0.1:${a.port}]
  - name: cb
    endpoints: [127.0.0.1:${b.port}]
`));
  return { a, b };
}

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

describe.each(PROTOCOLS)('over %s', (protocol) => {
  const client = clientFor(protocol, cleanup);

  async function call(path: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
    const res = await client.request(`${t!.url}${path}`, init);
    return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
  }

  async function bodyOf(path: string, init?: { method?: string; headers?: Record<string, string> }): Promise<string> {
    const a = await call(path, init);
    return a.status === 200 ? a.body : `${a.status}`;
  }

  describe('path matching', () => {
    it('prefix matches whole segments: /api matches /api, /api/ and /api/x, not /apix', async () => {
      await twoClusters(`
      - name: api
        match: { prefix: /api }
        cluster: ca
      - name: rest
        match: { prefix: / }
        cluster: cb`);
      expect(await bodyOf('/api')).toBe('a');
      expect(await bodyOf('/api/')).toBe('a');
      expect(await bodyOf('/api/x?q=1')).toBe('a');
      expect(await bodyOf('/apix')).toBe('b');
      expect(await bodyOf('/ap')).toBe('b');
    });

    it('a prefix ending in / matches only the paths starting with it', async () => {
      await twoClusters(`
      - match: { prefix: /api/ }
        cluster: ca
      - match: { prefix: / }
        cluster: cb`);
      expect(await bodyOf('/api/x')).toBe('a');
      expect(await bodyOf('/api/')).toBe('a');
      expect(await bodyOf('/api')).toBe('b');
    });

    it('path is exact, and matches the normalized path', async () => {
      await twoClusters(`
      - match: { path: /exact }
        cluster: ca
      - match: { prefix: / }
        cluster: cb`);
      expect(await bodyOf('/exact')).toBe('a');
      expect(await bodyOf('/exact?x=1')).toBe('a');
      expect(await bodyOf('/exact/')).toBe('b');
      expect(await bodyOf('/exactly')).toBe('b');
      expect(await bodyOf('/other/../exact')).toBe('a');
    });

    it('regex must match the whole path', async () => {
      await twoClusters(`
      - match: { regex: "/users/[0-9]+" }
        cluster: ca
      - match: { prefix: / }
        cluster: cb`);
      expect(await bodyOf('/users/42')).toBe('a');
      expect(await bodyOf('/users/42/orders')).toBe('b');
      expect(await bodyOf('/v1/users/42')).toBe('b');
      expect(await bodyOf('/users/abc')).toBe('b');
    });
  });

  describe('host, method and header matching', () => {
    it('host matches exactly and as *.suffix, ignoring the port and the case', async () => {
      await twoClusters(`
      - match: { prefix: /, host: api.example.com }
        cluster: ca
      - match: { prefix: /, host: "*.internal" }
        cluster: cb
      - match: { prefix: / }
        directResponse: { status: 200, body: other }`);
      expect(await bodyOf('/', { headers: { host: 'api.example.com' } })).toBe('a');
      expect(await bodyOf('/', { headers: { host: 'API.Example.com:8443' } })).toBe('a');
      expect(await bodyOf('/', { headers: { host: 'x.api.example.com' } })).toBe('other');
      expect(await bodyOf('/', { headers: { host: 'orders.internal:15000' } })).toBe('b');
      expect(await bodyOf('/', { headers: { host: 'a.b.internal' } })).toBe('b');
      expect(await bodyOf('/', { headers: { host: 'internal' } })).toBe('other');
    });

    it('methods restrict a route', async () => {
      await twoClusters(`
      - match: { prefix: /, methods: [POST, PUT] }
        cluster: ca
      - match: { prefix: / }
        cluster: cb`);
      expect(await bodyOf('/', { method: 'POST' })).toBe('a');
      expect(await bodyOf('/', { method: 'PUT' })).toBe('a');
      expect(await bodyOf('/', { method: 'GET' })).toBe('b');
      expect(await bodyOf('/', { method: 'DELETE' })).toBe('b');
    });

    it('header matchers: exact, prefix, regex and present', async () => {
      await twoClusters(`
      - name: exact
        match: { prefix: /, headers: [{ name: x-canary, exact: "true" }] }
        directResponse: { status: 200, body: exact }
      - name: prefix
        match: { prefix: /, headers: [{ name: x-version, prefix: v2 }] }
        directResponse: { status: 200, body: prefix }
      - name: regex
        match: { prefix: /, headers: [{ name: x-tenant, regex: "t-[0-9]+" }] }
        directResponse: { status: 200, body: regex }
      - name: present
        match: { prefix: /, headers: [{ name: x-debug, present: true }] }
        directResponse: { status: 200, body: present }
      - name: rest
        match: { prefix: / }
        cluster: ca`);
      expect(await bodyOf('/', { headers: { 'x-canary': 'true' } })).toBe('exact');
      expect(await bodyOf('/', { headers: { 'x-canary': 'TRUE' } })).toBe('a');
      expect(await bodyOf('/', { headers: { 'x-version': 'v2.1' } })).toBe('prefix');
      expect(await bodyOf('/', { headers: { 'x-version': 'v1' } })).toBe('a');
      expect(await bodyOf('/', { headers: { 'x-tenant': 't-17' } })).toBe('regex');
      expect(await bodyOf('/', { headers: { 'x-tenant': 't-17x' } })).toBe('a');
      expect(await bodyOf('/', { headers: { 'x-debug': '' } })).toBe('present');
      expect(await bodyOf('/')).toBe('a');
    });

    it('the first matching route wins, in configured order', async () => {
      await twoClusters(`
      - name: broad
        match: { prefix: /api }
        cluster: ca
      - name: narrow
        match: { prefix: /api/special }
        cluster: cb`);
      expect(await bodyOf('/api/special')).toBe('a');
      const log = await t!.accessLog();
      expect(log[0]).toMatchObject({ route: 'broad', cluster: 'ca' });
    });

    it('no matching route: 404 no_route JSON, flag NR, upstream untouched', async () => {
      const { a } = await twoClusters(`
      - match: { prefix: /api }
        cluster: ca`);
      const res = await call('/nothing/here', { headers: { 'x-request-id': 'req-123' } });
      expect(res.status).toBe(404);
      expect(res.headers['content-type']).toBe('application/json');
      expect(res.headers['x-tandem-error']).toBe('no_route');
      expect(res.headers['x-request-id']).toBe('req-123');
      expect(JSON.parse(res.body)).toEqual({ error: 'no_route', message: expect.any(String), requestId: 'req-123' });
      expect(a.seen).toHaveLength(0);
      const log = await t!.accessLog();
      expect(log[0]).toMatchObject({ status: 404, route: null, cluster: null, flags: ['NR'] });
    });
  });

  describe('rewrites', () => {
    it('rewrite.prefix replaces the matched prefix in what the upstream receives', async () => {
      const { a, b } = await twoClusters(`
      - match: { prefix: /api/ }
        rewrite: { prefix: / }
        cluster: ca
      - match: { prefix: /v1 }
        rewrite: { prefix: /internal/v2 }
        cluster: cb`);
      await call('/api/users/7?full=1');
      await call('/api/');
      await call('/v1/orders');
      await call('/v1');
      expect(a.seen.map((s) => s.url)).toEqual(['/users/7?full=1', '/']);
      expect(b.seen.map((s) => s.url)).toEqual(['/internal/v2/orders', '/internal/v2']);
    });

    it('rewrite.host sets the Host the upstream receives; without it the client Host is kept', async () => {
      const { a, b } = await twoClusters(`
      - match: { prefix: /rewritten }
        rewrite: { host: api.internal }
        cluster: ca
      - match: { prefix: / }
        cluster: cb`);
      await call('/rewritten', { headers: { host: 'public.example.com' } });
      await call('/kept', { headers: { host: 'public.example.com:8080' } });
      expect(a.seen[0]!.headers.host).toBe('api.internal');
      expect(b.seen[0]!.headers.host).toBe('public.example.com:8080');
    });
  });

  describe('actions', () => {
    it('weightedClusters 90/10 splits 400 requests close to the weights', async () => {
      const { a, b } = await twoClusters(`
      - match: { prefix: / }
        weightedClusters:
          - { cluster: ca, weight: 90 }
          - { cluster: cb, weight: 10 }`);
      for (let i = 0; i < 400; i += 20) {
        await Promise.all(Array.from({ length: 20 }, () => call('/w')));
      }
      expect(a.seen.length + b.seen.length).toBe(400);
      // expected 40 to b, standard deviation 6: [15, 70] is far outside chance
      expect(b.seen.length).toBeGreaterThanOrEqual(15);
      expect(b.seen.length).toBeLessThanOrEqual(70);
    });

    it('directResponse answers with its status and body and an x-request-id', async () => {
      const { a } = await twoClusters(`
      - match: { path: /health }
        directResponse: { status: 418, body: "short and stout" }
      - match: { prefix: / }
        cluster: ca`);
      const res = await call('/health');
      expect(res.status).toBe(418);
      expect(res.body).toBe('short and stout');
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(a.seen).toHaveLength(0);
      const log = await t!.accessLog();
      expect(log[0]).toMatchObject({ status: 418, cluster: null, attempts: 0, flags: [] });
    });

    it('requestHeaders and responseHeaders set and remove', async () => {
      const { a } = await twoClusters(`
      - match: { prefix: / }
        cluster: ca
        requestHeaders: { set: { x-env: prod }, remove: [x-debug] }
        responseHeaders: { set: { x-served-by: tandem }, remove: [server] }`);
      const res = await call('/', { headers: { 'x-debug': '1', 'x-env': 'dev', 'x-keep': 'yes' } });
      expect(res.status).toBe(200);
      const seen = a.seen[0]!.headers;
      expect(seen['x-env']).toBe('prod');
      expect(seen['x-debug']).toBeUndefined();
      expect(seen['x-keep']).toBe('yes');
      expect(res.headers['x-served-by']).toBe('tandem');
      expect(res.headers.server).toBeUndefined();
      expect(res.headers['x-upstream']).toBe('a');
    });
  });

  describe('load balancing across two real upstreams', () => {
    async function oneClusterOfTwo(clusterExtra: string): Promise<void> {
      const a = await named('a');
      const b = await named('b');
      t = cleanup.add(await startTandem(simpleConfig([a.port, b.port], '', clusterExtra)));
    }

    it('round_robin alternates', async () => {
      await oneClusterOfTwo('loadBalancing: round_robin');
      const order: string[] = [];
      for (let i = 0; i < 6; i++) order.push(await bodyOf('/'));
      expect(order.filter((x) => x === 'a')).toHaveLength(3);
      for (let i = 1; i < order.length; i++) expect(order[i]).not.toBe(order[i - 1]);
    });

    it('ring_hash on a header is sticky per key and spreads keys', async () => {
      await oneClusterOfTwo('loadBalancing: ring_hash\nhashOn: { header: x-user-id }');
      const chosen = new Map<string, string>();
      for (let user = 0; user < 20; user++) {
        const id = `user-${user}`;
        const first = await bodyOf('/', { headers: { 'x-user-id': id } });
        for (let i = 0; i < 4; i++) expect(await bodyOf('/', { headers: { 'x-user-id': id } })).toBe(first);
        chosen.set(id, first);
      }
      // 20 keys all on one of two endpoints: chance 2^-19
      expect(new Set(chosen.values()).size).toBe(2);
    });
  });
});
