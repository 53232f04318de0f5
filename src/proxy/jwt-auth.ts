// A route's bearer-token check (CONTRACT §2, §4): the JWT in Authorization is
// verified against a JWKS (signature with RS256/ES256/EdDSA only, issuer,
// audience, exp/nbf within the clock skew); its forwarded claims become
// request headers.

import { readFileSync } from 'node:fs';
import type { JSONWebKeySet, JWTPayload, JWTVerifyGetKey } from 'jose';
import type { JwtAuthConfig } from '../config/types.js';
import { log } from '../observability/log.js';
import type { CompiledHeaderOps } from './headers.js';

/** HS256 and `none` are refused: a shared secret or no signature would let anyone holding the JWKS mint tokens. */
const ALGORITHMS = ['RS256', 'ES256', 'EdDSA'];

/** How often a jwksUri is fetched again (CONTRACT §2). */
export const JWKS_REFRESH_MS = 10 * 60_000;

/** A token naming a key the set lacks triggers a fetch (key rotation), at most this often. */
const UNKNOWN_KEY_COOLDOWN_MS = 30_000;

const JWKS_FETCH_TIMEOUT_MS = 5_000;

type Jose = typeof import('jose');

// jose is imported the first time a route uses JWT auth, not at start-up: a
// configuration without auth.jwt (the usual one) never pays for its modules.
let jose: Promise<Jose> | undefined;
const loadJose = (): Promise<Jose> => (jose ??= import('jose'));

const CHALLENGE_MISSING = 'Bearer realm="tandem"';
const CHALLENGE_INVALID = 'Bearer realm="tandem", error="invalid_token"';

/** Verified: the request headers to send upstream. Refused: the WWW-Authenticate challenge. */
export type AuthOutcome = { ok: true; ops: CompiledHeaderOps | undefined } | { ok: false; challenge: string };

export interface RouteAuth {
  check(authorization: string | undefined): Promise<AuthOutcome>;
}

/**
 * `routeOps` are the route's requestHeaders: the forwarded claims are merged
 * into them, so one pass over the client's headers drops both. `refreshMs` is
 * for tests.
 */
export function compileJwtAuth(cfg: JwtAuthConfig, routeOps: CompiledHeaderOps | undefined, refreshMs = JWKS_REFRESH_MS): RouteAuth {
  // The file is read here, so an unreadable one still fails the load; a
  // request that arrives before jose has loaded waits for it.
  const jwks = cfg.jwksUri === undefined ? readJwks(cfg.jwksFile!) : undefined;
  const verifier = loadJose().then((j) => ({
    jwtVerify: j.jwtVerify,
    keys: jwks === undefined ? remoteKeys(j, cfg.jwksUri!, refreshMs) : j.createLocalJWKSet(jwks),
  }));
  // A key jose refuses (rules.ts only checks for a "keys" array) refuses
  // every token: check() catches the same error.
  verifier.catch((err: unknown) => log.error({ err: (err as Error).message }, 'jwt auth has no usable keys'));
  const options = {
    issuer: cfg.issuer,
    audience: cfg.audiences,
    algorithms: ALGORITHMS,
    clockTolerance: cfg.clockSkew / 1000,
  };
  const claims = Object.entries(cfg.forwardClaims);
  const drop = [...(routeOps?.drop ?? [])];
  for (const [, header] of claims) if (!drop.includes(header)) drop.push(header);
  const withClaims = (payload: JWTPayload): CompiledHeaderOps | undefined => {
    if (claims.length === 0) return routeOps;
    const set = [...(routeOps?.set ?? [])];
    for (const [claim, header] of claims) {
      const value = headerValueOf(payload[claim]);
      if (value !== undefined) set.push(header, value);
    }
    return { drop, set, replacesGenerated: routeOps?.replacesGenerated ?? 0 };
  };

  return {
    async check(authorization) {
      const token = bearerToken(authorization);
      if (token === undefined) return { ok: false, challenge: CHALLENGE_MISSING };
      try {
        const { jwtVerify, keys } = await verifier;
        const { payload } = await jwtVerify(token, keys, options);
        return { ok: true, ops: withClaims(payload) };
      } catch {
        return { ok: false, challenge: CHALLENGE_INVALID };
      }
    },
  };
}

/** The token of `Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1); undefined when there is none. */
function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  const m = /^bearer +([^\s]+) *$/i.exec(authorization);
  return m === null ? undefined : m[1];
}

// A claim becomes a header only as text a header may carry: a string with a
// CR or LF in it would otherwise be refused by the HTTP client mid-request.
const HEADER_SAFE = /^[\t\x20-\x7e\x80-\xff]*$/;

function headerValueOf(claim: unknown): string | undefined {
  if (typeof claim === 'number' || typeof claim === 'boolean') return String(claim);
  if (typeof claim === 'string' && HEADER_SAFE.test(claim)) return claim;
  return undefined;
}

function readJwks(file: string): JSONWebKeySet {
  // rules.ts has checked that the file reads and parses as a JWKS.
  return JSON.parse(readFileSync(file, 'utf8')) as JSONWebKeySet;
}

/**
 * jose's remote set would await a new fetch once its cache is older than
 * cacheMaxAge and fail every token while that fetch fails. Here the cache
 * never expires by itself: a request arriving after `refreshMs` starts a
 * fetch in the background and is verified with the keys at hand, and only a
 * successful fetch replaces them, so a JWKS server that is down costs nothing
 * while the keys it served last still verify.
 */
function remoteKeys(j: Jose, uri: string, refreshMs: number): JWTVerifyGetKey {
  const set = j.createRemoteJWKSet(new URL(uri), {
    cacheMaxAge: Infinity,
    cooldownDuration: UNKNOWN_KEY_COOLDOWN_MS,
    timeoutDuration: JWKS_FETCH_TIMEOUT_MS,
  });
  const refresh = (): void => {
    set.reload().catch((err: unknown) => log.warn({ jwksUri: uri, err: (err as Error).message }, 'jwks fetch failed; keeping the last keys'));
  };
  let fetchedAt = Date.now();
  refresh();
  return (header, token) => {
    const now = Date.now();
    if (now - fetchedAt >= refreshMs && !set.reloading) {
      fetchedAt = now;
      refresh();
    }
    return set(header, token);
  };
}
