// TLS termination (and mTLS) on listeners, certificate rotation, and TLS
// origination to clusters, with certificates made by the openssl CLI.

import { beforeAll, describe, expect, it } from 'vitest';
import { createHash, X509Certificate } from 'node:crypto';
import { copyFileSync, renameSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { loadConfigText } from '../src/config/load.js';
import { buildUpstreamHeaders, compileHeaderOps } from '../src/proxy/headers.js';
import { certDir, type CertDir } from './support/certs.js';
import { eventually, simpleConfig, startTandem, startUpstream, tempDir, useCleanup, type RunningTandem, type Upstream } from './support/harness.js';

const cleanup = useCleanup();
let certs: CertDir;
const file = (name: string): string => certs.file(name);
const pem = (name: string): Buffer => certs.pem(name);

beforeAll(() => {
  certs = certDir();
  certs.make('ca', '/CN=Test CA', { isCa: true });
  certs.make('other-ca', '/CN=Other CA', { isCa: true });
  certs.make('server1', '/CN=server-1', { ca: 'ca', san: 'IP:127.0.0.1,DNS:localhost' });
  certs.make('server2', '/CN=server-2', { ca: 'ca', san: 'IP:127.0.0.1,DNS:localhost' });
  certs.make('named', '/CN=app.internal', { ca: 'ca', san: 'DNS:app.internal' });
  certs.make('client', '/O=Acme/CN=client', { ca: 'ca' });
  certs.make('stranger', '/CN=stranger', { ca: 'other-ca' });
});

function listenerConfig(upstreamPort: number, tlsBlock: string): string {
  return `
listeners:
  - name: secure
    address: 127.0.0.1
    port: 0
    tls: ${tlsBlock}
    routes:
      - match: { prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:${upstreamPort}]
`;
}

interface Answer {
  status: number;
  body: string;
  peerSubject: string;
  socketId: unknown;
}

/** One HTTPS request to tandem, trusting the test CA; `agent: false` means a fresh connection. */
function get(port: number, opts: https.RequestOptions = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: '/', ca: pem('ca.crt'), agent: false, ...opts }, (res) => {
      const socket = res.socket as tls.TLSSocket;
      const peerSubject = socket.getPeerX509Certificate()?.subject ?? '';
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, peerSubject, socketId: socket }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function startSecure(tlsBlock: string): Promise<{ t: RunningTandem; upstream: Upstream }> {
  const upstream = cleanup.add(await startUpstream());
  const t = cleanup.add(await startTandem(listenerConfig(upstream.port, tlsBlock)));
  return { t, upstream };
}

describe('TLS termination', () => {
  it('answers HTTPS and tells the upstream x-forwarded-proto: https, dropping a client-sent x-forwarded-client-cert', async () => {
    const { t, upstream } = await startSecure(`{ certFile: ${file('server1.crt')}, keyFile: ${file('server1.key')} }`);
    const res = await get(t.port, { headers: { 'x-forwarded-client-cert': 'Hash=forged;Subject="CN=admin"' } });
    expect(res.status).toBe(200);
    expect(res.body).toBe('ok');
    expect(res.peerSubject).toBe('CN=server-1');
    expect(upstream.seen[0]!.headers['x-forwarded-proto']).toBe('https');
    expect(upstream.seen[0]!.headers['x-forwarded-client-cert']).toBeUndefined();
  });

  it('refuses a TLS 1.1 client at the handshake', async () => {
    const { t, upstream } = await startSecure(`{ certFile: ${file('server1.crt')}, keyFile: ${file('server1.key')} }`);
    const outcome = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: t.port, ca: pem('ca.crt'), minVersion: 'TLSv1', maxVersion: 'TLSv1.1' });
      s.on('secureConnect', () => {
        s.destroy();
        resolve('connected');
      });
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(outcome).not.toBe('connected');
    expect(outcome).toMatch(/^ERR_SSL_|^ECONNRESET$/);
    expect(upstream.seen).toHaveLength(0);
  });

  describe('mTLS', () => {
    const mtls = (): string =>
      `{ certFile: ${file('server1.crt')}, keyFile: ${file('server1.key')}, caFile: ${file('ca.crt')}, requireClientCert: true }`;

    it('fails the handshake of a client without a certificate', async () => {
      const { t, upstream } = await startSecure(mtls());
      await expect(get(t.port)).rejects.toThrow();
      expect(upstream.seen).toHaveLength(0);
    });

    it('fails the handshake of a client whose certificate another CA signed', async () => {
      const { t, upstream } = await startSecure(mtls());
      await expect(get(t.port, { cert: pem('stranger.crt'), key: pem('stranger.key') })).rejects.toThrow();
      expect(upstream.seen).toHaveLength(0);
    });

    it("sends the verified client certificate's hash and subject upstream, never the client's own header", async () => {
      const { t, upstream } = await startSecure(mtls());
      const res = await get(t.port, {
        cert: pem('client.crt'),
        key: pem('client.key'),
        headers: { 'x-forwarded-client-cert': 'Hash=forged;Subject="CN=admin"' },
      });
      expect(res.status).toBe(200);
      const der = new X509Certificate(pem('client.crt')).raw;
      const hash = createHash('sha256').update(der).digest('hex');
      const seen = upstream.seen[0]!;
      expect(seen.headers['x-forwarded-client-cert']).toBe(`Hash=${hash};Subject="CN=client,O=Acme"`);
      expect(seen.rawHeaders.filter((h) => h.toLowerCase() === 'x-forwarded-client-cert')).toHaveLength(1);
    });
  });

  it('serves rotated certificate files to new connections while an open keep-alive connection goes on', async () => {
    const rotating = tempDir('tandem-tls-rotate-');
    copyFileSync(file('server1.crt'), join(rotating, 'tls.crt'));
    copyFileSync(file('server1.key'), join(rotating, 'tls.key'));
    const { t } = await startSecure(`{ certFile: ${join(rotating, 'tls.crt')}, keyFile: ${join(rotating, 'tls.key')} }`);
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    cleanup.add({ close: () => agent.destroy() });
    const first = await get(t.port, { agent });
    expect(first.peerSubject).toBe('CN=server-1');

    // Write beside, then rename: a reader never sees half a file.
    copyFileSync(file('server2.key'), join(rotating, 'tls.key.new'));
    copyFileSync(file('server2.crt'), join(rotating, 'tls.crt.new'));
    renameSync(join(rotating, 'tls.key.new'), join(rotating, 'tls.key'));
    renameSync(join(rotating, 'tls.crt.new'), join(rotating, 'tls.crt'));
    expect(await eventually(async () => (await get(t.port)).peerSubject === 'CN=server-2', 3000)).toBe(true);

    const again = await get(t.port, { agent });
    expect(again.status).toBe(200);
    expect(again.socketId).toBe(first.socketId);
  });

  it('keeps the old certificate when the new files do not make a pair', async () => {
    const rotating = tempDir('tandem-tls-rotate-');
    copyFileSync(file('server1.crt'), join(rotating, 'tls.crt'));
    copyFileSync(file('server1.key'), join(rotating, 'tls.key'));
    const { t } = await startSecure(`{ certFile: ${join(rotating, 'tls.crt')}, keyFile: ${join(rotating, 'tls.key')} }`);
    // server2's certificate with server1's key: the re-read must fail.
    copyFileSync(file('server2.crt'), join(rotating, 'tls.crt'));
    // Give the watcher time to try (its debounce is 50 ms), then check nothing changed.
    await new Promise((r) => setTimeout(r, 300));
    const res = await get(t.port);
    expect(res.status).toBe(200);
    expect(res.peerSubject).toBe('CN=server-1');
  });
});

/** An HTTPS upstream with `name`'s certificate that records the SNI each request came with. */
async function startHttpsUpstream(name: string): Promise<{ port: number; servernames: (string | false)[]; close(): Promise<void> }> {
  const servernames: (string | false)[] = [];
  const server = https.createServer({ cert: pem(`${name}.crt`), key: pem(`${name}.key`) }, (req, res) => {
    servernames.push((req.socket as tls.TLSSocket).servername ?? false);
    res.end('secure upstream');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    servernames,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function originationConfig(upstreamPort: number, tlsBlock: string): string {
  return simpleConfig([upstreamPort], '', `tls: ${tlsBlock}`);
}

async function plainGet(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

describe('x-forwarded-client-cert rules', () => {
  const base = { clientIp: '10.0.0.1', proto: 'https' as const, requestId: 'r', traceparent: 't' };

  it("replaces the client's header (any case) with tandem's value, and route ops cannot set it", () => {
    const ops = compileHeaderOps({ set: { 'X-Forwarded-Client-Cert': 'Hash=ops' }, remove: ['x-forwarded-client-cert'] });
    expect(ops).toBeUndefined();
    const out = buildUpstreamHeaders(['X-Forwarded-Client-Cert', 'Hash=forged', 'accept', '*/*'], { ...base, clientCert: 'Hash=real' });
    const values = out.filter((_, i) => i % 2 === 1 && out[i - 1]!.toLowerCase() === 'x-forwarded-client-cert');
    expect(values).toEqual(['Hash=real']);
    expect(out.slice(0, 2)).toEqual(['accept', '*/*']);
  });

  it('sends none without a verified client certificate', () => {
    const out = buildUpstreamHeaders(['x-forwarded-client-cert', 'Hash=forged'], base);
    expect(out.map((h) => h.toLowerCase())).not.toContain('x-forwarded-client-cert');
  });
});

describe('TLS origination', () => {
  it('reaches an HTTPS upstream whose certificate the configured CA signed', async () => {
    const upstream = cleanup.add(await startHttpsUpstream('server1'));
    const t = cleanup.add(await startTandem(originationConfig(upstream.port, `{ caFile: ${file('ca.crt')} }`)));
    expect(await plainGet(t.url)).toEqual({ status: 200, body: 'secure upstream' });
  });

  it('answers 502 upstream_connect_failure when the upstream certificate does not verify', async () => {
    const upstream = cleanup.add(await startHttpsUpstream('server1'));
    const t = cleanup.add(await startTandem(originationConfig(upstream.port, `{ caFile: ${file('other-ca.crt')} }`)));
    const res = await plainGet(t.url);
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body).error).toBe('upstream_connect_failure');
    expect(upstream.servernames).toHaveLength(0);
  });

  it('sends serverName as SNI and verifies the certificate against it', async () => {
    const upstream = cleanup.add(await startHttpsUpstream('named'));
    const named = cleanup.add(
      await startTandem(originationConfig(upstream.port, `{ caFile: ${file('ca.crt')}, serverName: app.internal }`)),
    );
    expect(await plainGet(named.url)).toEqual({ status: 200, body: 'secure upstream' });
    expect(upstream.servernames).toEqual(['app.internal']);

    // Without it the address is verified, and the certificate names only app.internal.
    const byAddress = cleanup.add(await startTandem(originationConfig(upstream.port, `{ caFile: ${file('ca.crt')} }`)));
    expect((await plainGet(byAddress.url)).status).toBe(502);
  });

  it('presents the configured client certificate to an upstream that requires one', async () => {
    const seen: string[] = [];
    const server = https.createServer(
      { cert: pem('server1.crt'), key: pem('server1.key'), ca: pem('ca.crt'), requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        seen.push((req.socket as tls.TLSSocket).getPeerX509Certificate()?.subject ?? '');
        res.end('mutual');
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.add({ close: () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections())) });
    const port = (server.address() as AddressInfo).port;
    const t = cleanup.add(
      await startTandem(
        originationConfig(port, `{ caFile: ${file('ca.crt')}, certFile: ${file('client.crt')}, keyFile: ${file('client.key')} }`),
      ),
    );
    expect(await plainGet(t.url)).toEqual({ status: 200, body: 'mutual' });
    expect(seen).toEqual(['O=Acme\nCN=client']);
  });
});

describe('TLS configuration', () => {
  it('reports unreadable TLS files with their line and column', () => {
    const text = `listeners:
  - port: 0
    tls:
      certFile: ${file('missing.crt')}
      keyFile: ${file('server1.key')}
    routes:
      - match: { prefix: / }
        directResponse: { status: 200 }
clusters:
  - name: app
    endpoints: [127.0.0.1:1]
    tls:
      caFile: ${file('nowhere/ca.crt')}
`;
    const r = loadConfigText(text, 'tls.yaml');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    // an unreadable file is a bad value: the column points at the value (CONTRACT §2)
    expect(r.errors.map((e) => [e.line, e.col, e.path])).toEqual([
      [4, 17, 'listeners.0.tls.certFile'],
      [13, 15, 'clusters.0.tls.caFile'],
    ]);
    expect(r.errors[0]!.message).toContain('ENOENT');
  });

  it('needs caFile for requireClientCert and keyFile with certFile', () => {
    const text = `listeners:
  - port: 0
    tls: { certFile: ${file('server1.crt')}, keyFile: ${file('server1.key')}, requireClientCert: true }
    routes:
      - match: { prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:1]
    tls: { certFile: ${file('client.crt')} }
`;
    const r = loadConfigText(text, 'tls.yaml');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => [e.path, e.message])).toEqual([
      ['listeners.0.tls.requireClientCert', 'requireClientCert needs caFile to verify client certificates'],
      ['clusters.0.tls', 'certFile and keyFile go together: keyFile is missing'],
    ]);
  });

  it('defaults requireClientCert to false', () => {
    const r = loadConfigText(listenerConfig(1, `{ certFile: ${file('server1.crt')}, keyFile: ${file('server1.key')} }`), 'tls.yaml');
    expect(r.ok && r.config.listeners[0]!.tls).toEqual({
      certFile: file('server1.crt'),
      keyFile: file('server1.key'),
      requireClientCert: false,
    });
  });
});
