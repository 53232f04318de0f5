// Requests Node's HTTP parser refuses (or whose head or body is too slow)
// are answered by tandem with raw bytes before any route is looked up. They
// are requests all the same (CONTRACT §3, §9): one access-log line each,
// flag DPE, route null, counted in tandem_requests_total under the
// listener's no-route series. A connection that is gone before anything
// could be answered is no request.

import net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  expectRawTandemError,
  metricValue,
  parseResponses,
  rawClient,
  rawRequest,
  simpleConfig,
  startTandem,
  startUpstream,
  useCleanup,
  waitForAccessLog,
} from './support/harness.js';

const cleanup = useCleanup();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function proxy(limits = ''): Promise<Awaited<ReturnType<typeof startTandem>>> {
  const up = cleanup.add(await startUpstream());
  const yaml = simpleConfig([up.port]);
  return cleanup.add(await startTandem(limits === '' ? yaml : yaml.replace('    port: 0\n', `    port: 0\n    limits: { ${limits} }\n`)));
}

describe('refused by the parser before routing', () => {
  it.each([
    ['Content-Length and Transfer-Encoding both', 'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'bad_request'],
    ['an obs-folded header', 'GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n', 400, 'bad_request'],
    ['150 header lines', `GET /x HTTP/1.1\r\nHost: a\r\n${Array.from({ length: 150 }, (_, i) => `x-h${i}: v\r\n`).join('')}\r\n`, 431, 'headers_too_large'],
    ['a 70 KB URL', `GET /${'a'.repeat(70 * 1024)} HTTP/1.1\r\nHost: a\r\n\r\n`, 431, 'headers_too_large'],
    ['not HTTP at all', 'SSH-2.0-OpenSSH_9.6\r\n\r\n', 400, 'bad_request'],
  ])('%s: one line with DPE and the status, route null, counted', async (_what, bytes, status, code) => {
    const t = await proxy();
    const raw = await rawRequest(t.port, bytes);
    const [res] = parseResponses(raw.text);
    expectRawTandemError(res, status, code, { close: true });
    const lines = await waitForAccessLog(t, 1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      requestId: res!.headers.find(([n]) => n === 'x-request-id')![1],
      clientIp: '127.0.0.1',
      method: '',
      path: '',
      status,
      listener: 'inbound',
      route: null,
      cluster: null,
      endpoint: null,
      attempts: 0,
      upstreamMs: null,
      flags: ['DPE'],
    });
    expect(typeof lines[0]!.traceId).toBe('string');
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { listener: 'inbound', route: 'no_route', code: String(status) })).toBe(1);
  });

  it('a bad chunk in a routed request: the request it belongs to is logged once, with DPE', async () => {
    const t = await proxy();
    const raw = await rawRequest(t.port, 'POST /chunks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n');
    expectRawTandemError(parseResponses(raw.text)[0], 400, 'bad_request', { close: true });
    await sleep(100);
    const lines = await waitForAccessLog(t, 1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ method: 'POST', path: '/chunks', status: 400, route: 'all', flags: ['DPE'] });
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { route: 'all', code: '400' })).toBe(1);
  });

  it('chunk extensions over 16 KiB: 413 as Node itself answers, logged once with DPE', async () => {
    const t = await proxy();
    const raw = await rawRequest(t.port, `POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;x=${'a'.repeat(20_000)}\r\nz\r\n0\r\n\r\n`);
    expectRawTandemError(parseResponses(raw.text)[0], 413, 'payload_too_large', { close: true });
    await sleep(100);
    const lines = await waitForAccessLog(t, 1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ path: '/ext', status: 413, flags: ['DPE'] });
  });

  it('a scan of many probes on one tandem leaves one line and one count per probe', async () => {
    const t = await proxy();
    const probes = [
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n',
    ];
    const rounds = 5;
    for (let i = 0; i < rounds; i++) {
      await Promise.all(probes.map((p) => rawRequest(t.port, p)));
    }
    const n = rounds * probes.length;
    const lines = await waitForAccessLog(t, n);
    expect(lines).toHaveLength(n);
    expect(lines.every((l) => l.status === 400 && (l.flags as string[]).includes('DPE'))).toBe(true);
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { route: 'no_route', code: '400' })).toBe(n);
  });
});

describe('timeouts and connections that end', () => {
  it('a head not complete within headersTimeout: one 408 line with DPE, counted', async () => {
    const t = await proxy('headersTimeout: 300ms');
    const c = await rawClient(t.port);
    cleanup.add({ close: () => c.destroy() });
    c.write('GET /slow HTTP/1.1\r\nHost: a\r\nx-partial: ');
    expect(await c.waitClosed(3000)).toBe(true);
    expectRawTandemError(parseResponses(c.text())[0], 408, 'request_timeout', { close: true });
    const lines = await waitForAccessLog(t, 1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ method: '', path: '', status: 408, route: null, flags: ['DPE'] });
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { route: 'no_route', code: '408' })).toBe(1);
  });

  it('a client that resets its connection mid-head gets nothing and is no request', async () => {
    const t = await proxy();
    const socket = net.connect(t.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.on('error', () => undefined);
    socket.write('GET /gone HTTP/1.1\r\nHost: a\r\nx-par');
    await sleep(50);
    socket.resetAndDestroy();
    // a request answered after the reset is logged: the reset's line would be there by then
    const after = await rawRequest(t.port, 'GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    expect(parseResponses(after.text)[0]!.status).toBe(200);
    await sleep(100);
    const lines = await waitForAccessLog(t, 1);
    expect(lines.map((l) => [l.path, l.status])).toEqual([['/after', 200]]);
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { route: 'no_route' })).toBeUndefined();
  });

  it('CONNECT: 405, logged with its method and target, counted under no_route', async () => {
    const t = await proxy();
    const raw = await rawRequest(t.port, 'CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n');
    expectRawTandemError(parseResponses(raw.text)[0], 405, 'method_not_allowed', { close: true });
    const lines = await waitForAccessLog(t, 1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ method: 'CONNECT', path: 'evil:443', status: 405, route: null, flags: [] });
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { route: 'no_route', code: '405' })).toBe(1);
  });
});
