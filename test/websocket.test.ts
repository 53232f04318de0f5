// WebSocket tunnels (CONTRACT §3): an HTTP/1.1 Upgrade is routed like any
// request, the upstream's 101 goes back to the client, then bytes flow both
// ways untouched. The upstream completes the RFC 6455 handshake itself and
// echoes raw bytes; the client is a raw socket.

import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  deadPort,
  eventually,
  expectTandemError,
  header,
  metricValue,
  parseResponses,
  rawClient,
  startRawUpstream,
  startTandem,
  startUpstream,
  statusOf,
  useCleanup,
  waitForAccessLog,
  writeTempFile,
  type ParsedResponse,
  type RawClient,
  type Upstream,
} from './support/harness.js';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

function acceptFor(key: string): string {
  return createHash('sha1').update(key + WS_GUID).digest('base64');
}

interface WsUpstream {
  port: number;
  /** the upgrade requests it received */
  seen: http.IncomingMessage[];
  /** its side of every open tunnel */
  sockets: Set<Duplex>;
  /** when not 0, upgrades are refused with this status instead of a 101 */
  refuseWith: number;
  close(): Promise<void>;
}

/**
 * Completes the handshake, says `hello` first, then echoes every byte until
 * the peer closes. A plain request gets `plainStatus`.
 */
async function startWsUpstream(plainStatus = 400): Promise<WsUpstream> {
  const seen: http.IncomingMessage[] = [];
  const sockets = new Set<Duplex>();
  const upstream: WsUpstream = {
    port: 0,
    seen,
    sockets,
    refuseWith: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((_req, res) => {
    res.writeHead(plainStatus);
    res.end('upgrade only');
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    seen.push(req);
    if (upstream.refuseWith !== 0) {
      socket.end(`HTTP/1.1 ${upstream.refuseWith} Refused\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const key = String(req.headers['sec-websocket-key'] ?? '');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\n' +
        'Upgrade: websocket\r\n' +
        'Connection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${acceptFor(key)}\r\n` +
        'X-Upstream: ws\r\n\r\n',
    );
    socket.write('hello');
    if (head.length > 0) socket.write(head);
    socket.on('data', (d: Buffer) => socket.write(d));
    // as a WebSocket server does when its peer goes away
    socket.on('end', () => socket.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.port = (server.address() as AddressInfo).port;
  return upstream;
}

function upgradeRequest(path = '/ws', extra = ''): string {
  return (
    `GET ${path} HTTP/1.1\r\n` +
    'Host: chat.example\r\n' +
    'Upgrade: websocket\r\n' +
    'Connection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${KEY}\r\n` +
    'Sec-WebSocket-Version: 13\r\n' +
    extra +
    '\r\n'
  );
}

function configFor(port: number, routeExtra = '', clusterExtra = '', listenerExtra = ''): string {
  return `
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    ${listenerExtra}
    routes:
      - name: ws
        match: { prefix: /ws }
        rewrite: { prefix: /socket }
        cluster: app
        ${routeExtra}
clusters:
  - name: app
    endpoints: [127.0.0.1:${port}]
    connectTimeout: 300ms
    ${clusterExtra}
`;
}

const cleanup = useCleanup();

async function client(port: number): Promise<RawClient> {
  const c = await rawClient(port);
  cleanup.add({ close: () => c.destroy() });
  return c;
}

const headEnd = (text: string): number => text.indexOf('\r\n\r\n');

/** A client whose upgrade was answered 101 and the upstream's `hello`. */
async function openTunnel(port: number, path?: string, extra?: string): Promise<RawClient> {
  const c = await client(port);
  c.write(upgradeRequest(path, extra));
  expect(statusOf(await c.waitFor((s) => s.endsWith('hello')))).toBe(101);
  return c;
}

/** The answer to an upgrade that is refused (by tandem or the upstream): the connection closes after it. */
async function refusedUpgrade(port: number, path?: string, extra?: string): Promise<ParsedResponse> {
  const c = await client(port);
  c.write(upgradeRequest(path, extra));
  expect(await c.waitClosed()).toBe(true);
  const [res] = parseResponses(c.text());
  expect(res).toBeDefined();
  return res!;
}

describe('WebSocket tunnel', () => {
  it('answers 101 with the upstream accept key and carries bytes both ways', async () => {
    const up = await startWsUpstream();
    cleanup.add(up);
    const t = cleanup.add(await startTandem(configFor(up.port)));
    const c = await client(t.port);
    c.write(upgradeRequest('/ws/room?id=1'));
    const text = await c.waitFor((s) => headEnd(s) !== -1 && s.endsWith('hello'));
    const head = text.slice(0, headEnd(text));
    expect(statusOf(text)).toBe(101);
    expect(head).toMatch(/^sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=$/im);
    expect(head).toMatch(/^upgrade: websocket$/im);
    expect(head).toMatch(/^connection: upgrade$/im);
    expect(head).toMatch(/^x-request-id: [0-9a-f-]{36}$/im);

    // routed and rewritten like any request, with the upgrade headers kept
    const seen = up.seen[0]!;
    expect(seen.url).toBe('/socket/room?id=1');
    expect(seen.headers.upgrade).toBe('websocket');
    expect(seen.headers['sec-websocket-key']).toBe(KEY);
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers.host).toBe('chat.example');

    // client -> upstream -> echoed back, binary included
    const payload = Buffer.from([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, 0x00, 0xff]);
    c.write(payload);
    const after = await c.waitFor((s) => s.length >= text.length + payload.length);
    expect(Buffer.from(after.slice(text.length), 'latin1').equals(payload)).toBe(true);
    expect(t.tandem.listeners[0]!.tunnels.size).toBe(1);
  });

  it('passes bytes sent together with the upgrade request', async () => {
    const up = await startWsUpstream();
    cleanup.add(up);
    const t = cleanup.add(await startTandem(configFor(up.port)));
    const c = await client(t.port);
    c.write(upgradeRequest() + 'early-bytes');
    const text = await c.waitFor((s) => s.includes('early-bytes'));
    expect(statusOf(text)).toBe(101);
    expect(text.slice(headEnd(text) + 4)).toBe('helloearly-bytes');
  });

  it('closes the client side when the upstream closes, and the reverse', async () => {
    const up = await startWsUpstream();
    cleanup.add(up);
    const t = cleanup.add(await startTandem(configFor(up.port)));
    const tunnels = t.tandem.listeners[0]!.tunnels;

    const c1 = await openTunnel(t.port);
    for (const s of up.sockets) s.end();
    expect(await c1.waitClosed()).toBe(true);

    const c2 = await openTunnel(t.port);
    expect(up.sockets.size).toBe(1);
    c2.destroy();
    expect(await eventually(() => up.sockets.size === 0)).toBe(true);
    expect(await eventually(() => tunnels.size === 0)).toBe(true);
  });

  it('logs one access-log line per tunnel when it closes, and counts it in the metrics', async () => {
    const up = await startWsUpstream();
    cleanup.add(up);
    const t = cleanup.add(await startTandem(configFor(up.port)));
    const c = await openTunnel(t.port, '/ws/x');
    c.write('ping!');
    await c.waitFor((s) => s.endsWith('ping!'));
    expect(await t.accessLog()).toHaveLength(0); // still open
    c.destroy();
    const [line] = await waitForAccessLog(t, 1);
    expect(line).toMatchObject({ method: 'GET', path: '/ws/x', status: 101, route: 'ws', cluster: 'app', attempts: 1, flags: [] });
    expect(line!.bytesIn).toBe(5);
    expect(line!.bytesOut).toBe(10); // "hello" then the echoed "ping!"
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { route: 'ws', code: '101' })).toBe(1);
    expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '101' })).toBe(1);
    expect(await metricValue(t.adminUrl, 'tandem_upstream_active_requests', { cluster: 'app' })).toBe(0);
  });

  it('logs a refused or failed upgrade with its status and flag', async () => {
    const t = cleanup.add(await startTandem(configFor(await deadPort())));
    const c = await client(t.port);
    c.write(upgradeRequest());
    expect(await c.waitClosed()).toBe(true);
    const [line] = await waitForAccessLog(t, 1);
    expect(line).toMatchObject({ status: 502, flags: ['UF'], route: 'ws', cluster: 'app' });
  });

  it('an upstream refusing the upgrade: its status goes back and the socket closes', async () => {
    const up = await startUpstream((_req, res) => {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('no sockets here');
    });
    cleanup.add(up);
    const t = cleanup.add(await startTandem(configFor(up.port)));
    const res = await refusedUpgrade(t.port);
    expect(res?.status).toBe(403);
    expect(res?.body).toBe('no sockets here');
    expect(header(res!, 'connection')).toBe('close');
    expect(header(res!, 'content-type')).toBe('text/plain');
    expect(header(res!, 'x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(t.tandem.listeners[0]!.tunnels.size).toBe(0);
  });

  it('an upstream that never answers the upgrade: 504 upstream_timeout after the route timeout', async () => {
    const up = await startRawUpstream(() => undefined);
    cleanup.add(up);
    const t = cleanup.add(await startTandem(configFor(up.port, 'timeout: 200ms')));
    const c = await client(t.port);
    const started = Date.now();
    c.write(upgradeRequest());
    expect(await c.waitClosed()).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(180);
    const [res] = parseResponses(c.text());
    expect(res?.status).toBe(504);
    expect(header(res!, 'x-tandem-error')).toBe('upstream_timeout');
  });

  it('an upstream that closes without answering: 502 upstream_reset', async () => {
    const up = await startRawUpstream((s) => s.once('data', () => s.destroy()));
    cleanup.add(up);
    const t = cleanup.add(await startTandem(configFor(up.port)));
    const res = await refusedUpgrade(t.port);
    expect(res?.status).toBe(502);
    expect(header(res!, 'x-tandem-error')).toBe('upstream_reset');
  });

  it('a dead upstream: 502 upstream_connect_failure and the socket closes', async () => {
    const t = cleanup.add(await startTandem(configFor(await deadPort())));
    const res = await refusedUpgrade(t.port);
    expect(res?.status).toBe(502);
    expect(header(res!, 'x-tandem-error')).toBe('upstream_connect_failure');
    expect(JSON.parse(res!.body)).toMatchObject({ error: 'upstream_connect_failure' });
  });

  it('no route: 404 no_route and the socket closes', async () => {
    const up = await startWsUpstream();
    cleanup.add(up);
    const t = cleanup.add(await startTandem(configFor(up.port)));
    const c = await client(t.port);
    c.write(upgradeRequest('/elsewhere'));
    expect(await c.waitClosed()).toBe(true);
    expect(c.text()).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
    const [res] = parseResponses(c.text());
    expect(res?.status).toBe(404);
    expect(header(res!, 'x-tandem-error')).toBe('no_route');
    expect(header(res!, 'connection')).toBe('close');
    expect(up.seen).toHaveLength(0);
  });

  it('upgrades meet the same admission rules: a second Host or an underscored header gets 400 and no upstream', async () => {
    const up = cleanup.add(await startWsUpstream());
    const t = cleanup.add(await startTandem(configFor(up.port)));
    for (const extra of ['Host: other.example\r\n', 'x_user: admin\r\n']) {
      const res = await refusedUpgrade(t.port, '/ws', extra);
      expect(res?.status).toBe(400);
      expect(header(res!, 'x-tandem-error')).toBe('bad_request');
    }
    expect(up.seen).toHaveLength(0);
  });

  it("upgrades count against the route's rate limit: 429 with retry-after once the bucket is empty", async () => {
    const up = cleanup.add(await startWsUpstream());
    const t = cleanup.add(await startTandem(configFor(up.port, 'rateLimit: { requestsPerSecond: 1, burst: 1, key: route }')));
    await openTunnel(t.port);
    const res = await refusedUpgrade(t.port);
    expect(res?.status).toBe(429);
    expect(header(res!, 'x-tandem-error')).toBe('rate_limited');
    expect(header(res!, 'retry-after')).toBe('1');
    expect(up.seen).toHaveLength(1);
  });

  it("a route's auth.jwt holds for upgrades: no token gets 401, a valid one is tunnelled with its claims forwarded", async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwks = writeTempFile(JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] }), 'jwks.json');
    const up = cleanup.add(await startWsUpstream());
    const auth = `auth: { jwt: { issuer: https://issuer.test, audiences: [chat], jwksFile: ${jwks}, forwardClaims: { sub: x-user-id } } }`;
    const t = cleanup.add(await startTandem(configFor(up.port, auth)));

    const refused = await refusedUpgrade(t.port);
    expect(refused?.status).toBe(401);
    expect(header(refused!, 'x-tandem-error')).toBe('unauthorized');
    expect(header(refused!, 'www-authenticate')).toMatch(/^Bearer /);
    expect(up.seen).toHaveLength(0);

    const token = await new SignJWT({ sub: 'user-7' })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer('https://issuer.test')
      .setAudience('chat')
      .setExpirationTime('5m')
      .sign(privateKey);
    await openTunnel(t.port, '/ws', `Authorization: Bearer ${token}\r\n`);
    expect(up.seen[0]!.headers['x-user-id']).toBe('user-7');
  });

  it('with headersWithUnderscores: drop, an upgrade is forwarded without its underscored headers', async () => {
    const up = cleanup.add(await startWsUpstream());
    const t = cleanup.add(await startTandem(configFor(up.port, '', '', 'limits: { headersWithUnderscores: drop }')));
    await openTunnel(t.port, '/ws', 'X_User: admin\r\nX-User: alice\r\n');
    const names = up.seen[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names).not.toContain('x_user');
    expect(up.seen[0]!.headers['x-user']).toBe('alice');
  });
});

describe('WebSocket tunnel and the route idleTimeout', () => {
  it('keeps a tunnel with bytes flowing, closes one silent for idleTimeout and logs UT', async () => {
    const up = await startWsUpstream();
    cleanup.add(up);
    const t = cleanup.add(await startTandem(configFor(up.port, 'idleTimeout: 300ms')));
    const c = await openTunnel(t.port);
    // client -> upstream -> echoed back every 100 ms for 600 ms: never idle
    for (let i = 0; i < 6; i++) {
      c.write(`m${i}`);
      await c.waitFor((s) => s.endsWith(`m${i}`));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(c.closed()).toBe(false);
    const silentFrom = Date.now();
    expect(await c.waitClosed(2000)).toBe(true);
    expect(Date.now() - silentFrom).toBeGreaterThanOrEqual(150);
    expect(await eventually(() => up.sockets.size === 0)).toBe(true);
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 101, flags: ['UT'] });
  });

  it('without idleTimeout a silent tunnel stays open', async () => {
    const up = await startWsUpstream();
    cleanup.add(up);
    const t = cleanup.add(await startTandem(configFor(up.port)));
    const c = await openTunnel(t.port);
    expect(await c.waitClosed(600)).toBe(false);
    expect(t.tandem.listeners[0]!.tunnels.size).toBe(1);
  });
});

describe("WebSocket upgrades and the cluster's circuit breakers", () => {
  it("an open tunnel holds one of the cluster's maxRequests: another upgrade or request gets 503 overflow until it closes", async () => {
    const up = cleanup.add(await startWsUpstream(200));
    const t = cleanup.add(await startTandem(configFor(up.port, '', 'circuitBreaker: { maxRequests: 1 }')));
    const first = await openTunnel(t.port);

    const refused = await refusedUpgrade(t.port);
    expect(refused?.status).toBe(503);
    expect(header(refused!, 'x-tandem-error')).toBe('overflow');
    const plain = await fetch(`${t.url}/ws/plain`);
    expect(plain.status).toBe(503);
    expect(plain.headers.get('x-tandem-error')).toBe('overflow');
    await plain.text();
    expect(up.seen).toHaveLength(1);
    expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_rejections_total', { cluster: 'app', reason: 'overflow' })).toBe(2);
    const lines = await waitForAccessLog(t, 2);
    expect(lines.map((l) => [l.status, l.flags])).toEqual([
      [503, ['UO']],
      [503, ['UO']],
    ]);

    // the slot comes back when the tunnel closes
    first.destroy();
    expect(await eventually(() => t.tandem.listeners[0]!.tunnels.size === 0)).toBe(true);
    await openTunnel(t.port);
  });

  it('an upgrade waiting for a connection counts against maxPendingRequests', async () => {
    // A raw upstream: an upgrade gets its 101 at once, a plain request waits for `release`.
    const held: (() => void)[] = [];
    const up = cleanup.add(
      await startRawUpstream((socket) =>
        socket.on('data', (d: Buffer) => {
          if (/^upgrade: websocket/im.test(d.toString())) {
            socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(KEY)}\r\n\r\nhello`);
          } else {
            held.push(() => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate'));
          }
        }),
      ),
    );
    // one pooled connection, taken by the held request: the upgrade waits for it
    const t = cleanup.add(await startTandem(configFor(up.port, '', 'pool: { connections: 1 }\n    circuitBreaker: { maxPendingRequests: 1 }')));
    const first = request(`${t.url}/ws/plain`);
    expect(await eventually(() => held.length === 1)).toBe(true);
    const waiting = await client(t.port);
    waiting.write(upgradeRequest());
    const limits = t.tandem.listeners[0]!.ctx.listener.routes.find((r) => r.name === 'ws')!.pickCluster!().limits;
    expect(await eventually(() => limits.pending === 1)).toBe(true);
    await expectTandemError(await request(`${t.url}/ws/other`), 503, 'overflow');
    held[0]!();
    expect((await first).statusCode).toBe(200);
    expect(statusOf(await waiting.waitFor((s) => s.endsWith('hello')))).toBe(101);
  });

  it('a refused upgrade gives its place back', async () => {
    const up = cleanup.add(
      await startUpstream((_req, res) => {
        res.writeHead(403);
        res.end('no');
      }),
    );
    const t = cleanup.add(await startTandem(configFor(up.port, '', 'circuitBreaker: { maxRequests: 1 }')));
    for (let i = 0; i < 3; i++) expect((await refusedUpgrade(t.port)).status).toBe(403);
    expect(up.seen).toHaveLength(3);
    expect(await metricValue(t.adminUrl, 'tandem_upstream_active_requests', { cluster: 'app' })).toBe(0);
  });

  it('a client that leaves while its upgrade waits for the upstream: 499 DC, the upstream try stopped, its place given back', async () => {
    let connections = 0;
    const up = cleanup.add(await startRawUpstream(() => void connections++));
    const t = cleanup.add(await startTandem(configFor(up.port, 'timeout: 300ms', 'circuitBreaker: { maxRequests: 1 }')));
    const leaving = await client(t.port);
    leaving.write(upgradeRequest());
    expect(await eventually(() => connections === 1)).toBe(true);
    leaving.destroy();
    const [line] = await waitForAccessLog(t, 1);
    expect(line).toMatchObject({ status: 499, flags: ['DC'], route: 'ws', attempts: 1 });
    expect(await metricValue(t.adminUrl, 'tandem_upstream_active_requests', { cluster: 'app' })).toBe(0);
    // not 503 overflow: the place came back, so this one waits out the route timeout
    expect(header(await refusedUpgrade(t.port), 'x-tandem-error')).toBe('upstream_timeout');
  });

  const breaker = 'circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 2 }';

  it.each([
    ['a connect failure', async () => ({ port: await deadPort(), seen: () => 0 })],
    [
      'a 5xx instead of a 101',
      async () => {
        const up = cleanup.add(
          await startUpstream((_req, res) => {
            res.writeHead(503);
            res.end('down');
          }),
        );
        return { port: up.port, seen: () => up.seen.length };
      },
    ],
  ])('failed upgrades (%s) open the error-rate breaker: then 503 circuit_open, nothing sent upstream', async (_what, upstream) => {
    const { port, seen } = await upstream();
    const t = cleanup.add(await startTandem(configFor(port, '', breaker)));
    for (let i = 0; i < 2; i++) {
      const failed = await refusedUpgrade(t.port);
      expect([502, 503]).toContain(failed.status);
      expect(header(failed, 'x-tandem-error')).not.toBe('circuit_open');
    }
    const before = seen();
    const res = await refusedUpgrade(t.port);
    expect(res?.status).toBe(503);
    expect(header(res!, 'x-tandem-error')).toBe('circuit_open');
    expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' })).toBe(1);
    expect(seen()).toBe(before);
    const lines = await waitForAccessLog(t, 3);
    expect(lines[2]).toMatchObject({ status: 503, flags: ['UO'], route: 'ws', cluster: 'app', attempts: 0 });
  });

  it('a half-open trial that is an upgrade closes the breaker on its 101, while the tunnel stays open', async () => {
    const up = cleanup.add(await startWsUpstream(200));
    up.refuseWith = 503;
    const t = cleanup.add(await startTandem(configFor(up.port, '', 'circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 2, resetTimeout: 200ms }')));
    for (let i = 0; i < 2; i++) expect((await refusedUpgrade(t.port)).status).toBe(503);
    expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' })).toBe(1);
    up.refuseWith = 0;
    await new Promise((resolve) => setTimeout(resolve, 300));
    const trial = await openTunnel(t.port);
    expect(await eventually(async () => (await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' })) === 0)).toBe(true);
    const plain = await fetch(`${t.url}/ws/plain`);
    expect(plain.status).toBe(200);
    await plain.text();
    expect(trial.closed()).toBe(false);
  });

  it('an established tunnel is a success for the error-rate breaker', async () => {
    const up = cleanup.add(await startWsUpstream(500));
    const t = cleanup.add(await startTandem(configFor(up.port, '', breaker)));
    for (let i = 0; i < 2; i++) await openTunnel(t.port);
    // two successes and two failures: 50 %, not over the threshold
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${t.url}/ws/plain`);
      expect(res.status).toBe(500);
      await res.text();
    }
    expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' })).toBe(0);
    const after = await fetch(`${t.url}/ws/plain`);
    expect(after.status).toBe(500);
    expect(after.headers.get('x-tandem-error')).toBeNull();
    await after.text();
  });
});

describe('WebSocket upgrades and the rules forwarded tries follow', () => {
  it("a 503 no_healthy_upstream to an upgrade gives the error-rate breaker no verdict, as for any request", async () => {
    const up = cleanup.add(await startWsUpstream());
    const health = 'healthCheck: { path: /healthz, interval: 50ms, timeout: 40ms, unhealthyThreshold: 1, healthyThreshold: 1 }';
    // the ws upstream answers /healthz 400: the endpoint goes unhealthy at once
    const t = cleanup.add(await startTandem(configFor(up.port, '', `${health}\n    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 2 }`)));
    expect(await eventually(async () => (await metricValue(t.adminUrl, 'tandem_endpoint_healthy', { cluster: 'app' })) === 0, 3000)).toBe(true);
    for (let i = 0; i < 3; i++) {
      const res = await refusedUpgrade(t.port);
      expect(res.status).toBe(503);
      expect(header(res, 'x-tandem-error')).toBe('no_healthy_upstream');
    }
    expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' })).toBe(0);
  });

  it('an upgrade left unanswered meets the idle timeout when the route has no timeout: 504 upstream_timeout, UT', async () => {
    const up = cleanup.add(await startRawUpstream(() => undefined));
    const t = cleanup.add(await startTandem(configFor(up.port, 'timeout: 0\n        idleTimeout: 250ms')));
    const started = Date.now();
    const res = await refusedUpgrade(t.port);
    expect(Date.now() - started).toBeGreaterThanOrEqual(230);
    expect(res.status).toBe(504);
    expect(header(res, 'x-tandem-error')).toBe('upstream_timeout');
    const [line] = await waitForAccessLog(t, 1);
    expect(line).toMatchObject({ status: 504, flags: ['UT'] });
  });

  it('a failed upgrade counts for outlier detection: the dead endpoint is ejected and later upgrades reach the live one', async () => {
    const up = cleanup.add(await startWsUpstream());
    const dead = await deadPort();
    const t = cleanup.add(await startTandem(`
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - { name: ws, match: { prefix: /ws }, cluster: app }
clusters:
  - name: app
    endpoints: [127.0.0.1:${dead}, 127.0.0.1:${up.port}]
    connectTimeout: 300ms
    outlierDetection: { consecutive5xx: 1, baseEjectionTime: 30s }
`));
    // round robin: the first upgrade meets the dead endpoint (upgrades are not retried)
    const first = await refusedUpgrade(t.port);
    expect(first.status).toBe(502);
    expect(await metricValue(t.adminUrl, 'tandem_outlier_ejections_total', { cluster: 'app' })).toBe(1);
    for (let i = 0; i < 4; i++) (await openTunnel(t.port)).destroy();
    expect(up.seen).toHaveLength(4);
  });
});
