// Route auth.jwt (CONTRACT §2, §4): keys are generated here, tokens signed
// here, and served to tandem from a file or a local JWKS server.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { formatConfigError } from '../src/config/errors.js';
import { loadConfigText } from '../src/config/load.js';
import { compileJwtAuth } from '../src/proxy/jwt-auth.js';
import {
  eventually,
  expectTandemError,
  simpleConfig,
  startTandem,
  startUpstream,
  useCleanup,
  writeTempFile,
} from './support/harness.js';
import { clientFor, PROTOCOLS } from './support/client.js';

const ISSUER = 'https://issuer.test';
const AUDIENCE = 'orders';
const CHALLENGE_MISSING = 'Bearer realm="tandem"';
const CHALLENGE_INVALID = 'Bearer realm="tandem", error="invalid_token"';

interface SigningKey {
  alg: 'RS256' | 'ES256' | 'EdDSA';
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function signingKey(alg: SigningKey['alg'], kid: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : undefined);
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, jwk };
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

interface TokenOptions {
  iss?: string;
  aud?: string;
  exp?: number;
  claims?: Record<string, unknown>;
}

function sign(key: SigningKey, o: TokenOptions = {}): Promise<string> {
  return new SignJWT({ sub: 'user-42', ...o.claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid })
    .setIssuer(o.iss ?? ISSUER)
    .setAudience(o.aud ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(o.exp ?? nowSeconds() + 300)
    .sign(key.privateKey);
}

const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

function jwksDoc(keys: SigningKey[]): string {
  return JSON.stringify({ keys: keys.map((k) => k.jwk) });
}

function authConfig(keySource: string, extra = ''): string {
  return [
    'auth:',
    '  jwt:',
    `    issuer: ${ISSUER}`,
    `    audiences: [other, ${AUDIENCE}]`,
    `    ${keySource}`,
    '    forwardClaims: { sub: x-user-id, admin: x-admin, level: x-level, team: x-team }',
    extra,
  ].join('\n');
}

/** A JWKS server whose document the test can change, and stop. */
async function startJwksServer(body: () => string): Promise<{ url: string; fetches: () => number; close(): Promise<void> }> {
  let fetches = 0;
  const server = http.createServer((_req, res) => {
    fetches++;
    res.setHeader('content-type', 'application/json');
    res.end(body());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/jwks.json`,
    fetches: () => fetches,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let rsa: SigningKey;
let ec: SigningKey;
let ed: SigningKey;
let impostor: SigningKey;

beforeAll(async () => {
  rsa = await signingKey('RS256', 'rsa-1');
  ec = await signingKey('ES256', 'ec-1');
  ed = await signingKey('EdDSA', 'ed-1');
  // same kid as the RSA key, other private key: a forged signature
  impostor = await signingKey('RS256', 'rsa-1');
});

describe.each(PROTOCOLS)('route auth.jwt over %s', (protocol) => {
  const cleanup = useCleanup();
  const client = clientFor(protocol, cleanup);

  describe('with a jwksFile', () => {
    async function setup() {
      const up = cleanup.add(await startUpstream());
      const file = writeTempFile(jwksDoc([rsa, ec, ed]), 'jwks.json');
      const t = cleanup.add(await startTandem(simpleConfig([up.port], authConfig(`jwksFile: ${file}`))));
      return { up, t };
    }

    it('a valid RS256, ES256 or EdDSA token passes: claims go upstream as headers, with the Authorization header', async () => {
      const { up, t } = await setup();
      for (const key of [rsa, ec, ed]) {
        const token = await sign(key, { claims: { admin: true, level: 3 } });
        const res = await client.request(`${t.url}/orders`, {
          headers: { authorization: `Bearer ${token}`, 'x-user-id': 'spoofed', 'x-team': 'spoofed' },
        });
        expect(res.statusCode).toBe(200);
        await res.body.text();
        const seen = up.seen.at(-1)!;
        expect(seen.headers.authorization).toBe(`Bearer ${token}`);
        expect(seen.headers['x-user-id']).toBe('user-42');
        expect(seen.headers['x-admin']).toBe('true');
        expect(seen.headers['x-level']).toBe('3');
        // the token has no team claim: the client's header is removed and none is sent
        expect(seen.headers['x-team']).toBeUndefined();
        expect(seen.rawHeaders.filter((n) => n.toLowerCase() === 'x-user-id')).toHaveLength(1);
      }
      expect(up.seen).toHaveLength(3);
    });

    it('a JWKS whose key jose cannot use (bad bytes in the modulus) refuses every token with 401, and tandem keeps serving', async () => {
      const up = cleanup.add(await startUpstream());
      const broken = { ...rsa.jwk, n: '!!not-base64url!!' };
      const file = writeTempFile(JSON.stringify({ keys: [broken] }), 'jwks.json');
      const t = cleanup.add(await startTandem(simpleConfig([up.port], authConfig(`jwksFile: ${file}`))));
      for (let i = 0; i < 2; i++) {
        const res = await client.request(t.url, { headers: { authorization: `Bearer ${await sign(rsa)}` } });
        await expectTandemError(res, 401, 'unauthorized');
        expect(res.headers['www-authenticate']).toBe(CHALLENGE_INVALID);
      }
      expect(up.seen).toHaveLength(0);
    });

    it('a token expired by less than the clock skew still passes', async () => {
      const { up, t } = await setup();
      const token = await sign(rsa, { exp: nowSeconds() - 10 });
      const res = await client.request(t.url, { headers: { authorization: `bearer ${token}` } });
      expect(res.statusCode).toBe(200);
      await res.body.text();
      expect(up.seen).toHaveLength(1);
    });

    it('no bearer token: 401 unauthorized with a challenge that carries no error', async () => {
      const { up, t } = await setup();
      for (const headers of [{}, { authorization: 'Basic dXNlcjpwdw==' }]) {
        const res = await client.request(t.url, { headers });
        await expectTandemError(res, 401, 'unauthorized');
        expect(res.headers['www-authenticate']).toBe(CHALLENGE_MISSING);
      }
      expect(up.seen).toHaveLength(0);
    });

    it('invalid tokens get 401 invalid_token and never reach the upstream', async () => {
      const { up, t } = await setup();
      const good = await sign(rsa);
      const [head, payload] = good.split('.');
      const hs256 = await new SignJWT({ sub: 'user-42' })
        .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime(nowSeconds() + 300)
        .sign(new TextEncoder().encode('a shared secret of at least thirty-two bytes'));
      const cases: Record<string, string> = {
        'expired beyond the skew': await sign(rsa, { exp: nowSeconds() - 60 }),
        'wrong issuer': await sign(rsa, { iss: 'https://evil.test' }),
        'wrong audience': await sign(ec, { aud: 'billing' }),
        'signed by another key': await sign(impostor),
        'signature of another token': `${head}.${b64url({ sub: 'admin', iss: ISSUER, aud: AUDIENCE })}.${good.split('.')[2]}`,
        'alg none': `${b64url({ alg: 'none', kid: 'rsa-1' })}.${payload}.`,
        HS256: hs256,
        'not a JWT': 'garbage',
      };
      for (const [what, token] of Object.entries(cases)) {
        const res = await client.request(t.url, { headers: { authorization: `Bearer ${token}` } });
        await expectTandemError(res, 401, 'unauthorized');
        expect(res.headers['www-authenticate'], what).toBe(CHALLENGE_INVALID);
      }
      expect(up.seen).toHaveLength(0);
    });
  });

  it('with a jwksUri, verifies with the keys fetched from the server', async () => {
    const jwks = cleanup.add(await startJwksServer(() => jwksDoc([ec])));
    const up = cleanup.add(await startUpstream());
    const t = cleanup.add(await startTandem(simpleConfig([up.port], authConfig(`jwksUri: ${jwks.url}`))));
    const ok = await client.request(t.url, { headers: { authorization: `Bearer ${await sign(ec)}` } });
    expect(ok.statusCode).toBe(200);
    await ok.body.text();
    expect(up.seen[0]!.headers['x-user-id']).toBe('user-42');
    const refused = await client.request(t.url, { headers: { authorization: `Bearer ${await sign(rsa)}` } });
    await expectTandemError(refused, 401, 'unauthorized');
    expect(refused.headers['www-authenticate']).toBe(CHALLENGE_INVALID);
    expect(up.seen).toHaveLength(1);
  });
});

describe('route auth.jwt with a jwksUri', () => {
  it('refreshes the set, and keeps the last good keys while the server is down', async () => {
    let published = [rsa];
    const jwks = await startJwksServer(() => jwksDoc(published));
    const auth = compileJwtAuth(
      { issuer: ISSUER, audiences: [AUDIENCE], jwksUri: jwks.url, forwardClaims: { sub: 'x-user-id' }, clockSkew: 30_000 },
      undefined,
      50,
    );
    const first = await auth.check(`Bearer ${await sign(rsa)}`);
    expect(first.ok).toBe(true);
    expect(first.ok && first.ops?.set).toEqual(['x-user-id', 'user-42']);

    // a rotation is picked up by the periodic refresh
    published = [rsa, ed];
    const before = jwks.fetches();
    await new Promise((r) => setTimeout(r, 60));
    await auth.check(`Bearer ${await sign(rsa)}`); // starts the refresh
    expect(await eventually(() => jwks.fetches() > before)).toBe(true);
    expect(await eventually(async () => (await auth.check(`Bearer ${await sign(ed)}`)).ok)).toBe(true);

    await jwks.close();
    await new Promise((r) => setTimeout(r, 60));
    // each check past the refresh interval tries the dead server, and still verifies with the cached keys
    for (let i = 0; i < 3; i++) {
      expect((await auth.check(`Bearer ${await sign(rsa)}`)).ok).toBe(true);
      expect((await auth.check(`Bearer ${await sign(ed)}`)).ok).toBe(true);
      await new Promise((r) => setTimeout(r, 60));
    }
    expect((await auth.check(`Bearer ${await sign(ec)}`)).ok).toBe(false);
  });
});

describe('route auth.jwt configuration', () => {
  function errorsOf(route: string): string[] {
    const result = loadConfigText(simpleConfig([8080], route), 'f.yaml');
    if (result.ok) throw new Error('expected the configuration to be refused');
    return result.errors.map(formatConfigError);
  }

  it('needs one of jwksFile | jwksUri, a JWKS in the file, and forwards no claim into a header tandem owns', () => {
    expect(errorsOf(['auth:', '  jwt: { issuer: i, audiences: [a] }'].join('\n'))).toEqual([
      expect.stringMatching(/routes\.0\.auth\.jwt: needs one of jwksFile \| jwksUri$/),
    ]);
    const notJwks = writeTempFile('{"kty":"RSA"}', 'jwks.json');
    expect(errorsOf(authConfig(`jwksFile: ${notJwks}`))).toEqual([
      expect.stringMatching(/auth\.jwt\.jwksFile: .* is not a JWKS/),
    ]);
    const file = writeTempFile(jwksDoc([]), 'jwks.json');
    const owned = ['auth:', '  jwt:', '    issuer: i', '    audiences: [a]', `    jwksFile: ${file}`, '    forwardClaims: { sub: Authorization }'];
    expect(errorsOf(owned.join('\n'))).toEqual([
      expect.stringMatching(/auth\.jwt\.forwardClaims\.sub: tandem sets or protects this header itself$/),
    ]);
    const uri = ['auth:', '  jwt:', '    issuer: i', '    audiences: [a]', '    jwksUri: ftp://x/jwks'];
    expect(errorsOf(uri.join('\n'))).toEqual([expect.stringMatching(/auth\.jwt\.jwksUri: must be an http\(s\) URL$/)]);
  });

  it('defaults the clock skew to 30 s', () => {
    const file = writeTempFile(jwksDoc([]), 'jwks.json');
    const loaded = loadConfigText(simpleConfig([8080], authConfig(`jwksFile: ${file}`)), 'f.yaml');
    expect(loaded.ok && loaded.config.listeners[0]!.routes[0]!.auth?.jwt.clockSkew).toBe(30_000);
  });
});
