// Relations between keys that a shape cannot express: exactly-one-of groups,
// references to clusters, unique names, non-conflicting ports and what a
// cluster's protocol needs. They read the raw parsed YAML, tolerating any
// shape, so that they are reported together with shape errors rather than
// after the user has fixed those.

import { readFileSync } from 'node:fs';
import type { ConfigIssue, ConfigPath } from './errors.js';
import { defaultListenerName, defaultRouteName } from './schema.js';
import { didYouMean } from './suggest.js';

type Raw = Record<string, unknown>;

const isRaw = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);
const items = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const has = (o: Raw, key: string) => Object.hasOwn(o, key);

const WILDCARD_ADDRESSES = new Set(['0.0.0.0', '::', '[::]']);

export function checkRules(input: unknown): ConfigIssue[] {
  if (!isRaw(input)) return [];
  const issues: ConfigIssue[] = [];
  const clusterNames = checkClusters(input.clusters, issues);
  checkListeners(input, clusterNames, issues);
  return issues;
}

function checkClusters(clusters: unknown, issues: ConfigIssue[]): Set<string> {
  const firstIndex = new Map<string, number>();
  items(clusters).forEach((cluster, i) => {
    if (!isRaw(cluster)) return;
    const path: ConfigPath = ['clusters', i];
    if (typeof cluster.name === 'string') {
      const first = firstIndex.get(cluster.name);
      if (first === undefined) firstIndex.set(cluster.name, i);
      else issues.push(duplicate('cluster', cluster.name, [...path, 'name'], ['clusters', first]));
    }
    exactlyOne(cluster, ['endpoints', 'dns'], path, issues);
    checkTlsFiles(cluster.tls, [...path, 'tls'], issues);
    checkProtocol(cluster, path, issues);
    if (isRaw(cluster.hashOn)) {
      exactlyOne(cluster.hashOn, ['header', 'cookie', 'clientIp'], [...path, 'hashOn'], issues);
      if ((cluster.loadBalancing ?? 'round_robin') !== 'ring_hash') {
        issues.push({ path: [...path, 'hashOn'], at: 'key', message: 'hashOn applies only with loadBalancing: ring_hash' });
      }
    }
  });
  return new Set(firstIndex.keys());
}

/** h2 is offered by TLS ALPN and h2c is HTTP/2 without TLS; gRPC runs over HTTP/2 only. */
function checkProtocol(cluster: Raw, path: ConfigPath, issues: ConfigIssue[]): void {
  const protocol = cluster.protocol ?? 'http1';
  const tls = has(cluster, 'tls');
  if (protocol === 'h2' && !tls) {
    issues.push({ path: [...path, 'protocol'], at: 'value', message: 'h2 needs tls (HTTP/2 is offered by TLS ALPN); use h2c for HTTP/2 without TLS' });
  }
  if (protocol === 'h2c' && tls) {
    issues.push({ path: [...path, 'protocol'], at: 'value', message: 'h2c is HTTP/2 without TLS; use h2 with tls' });
  }
  if (!isRaw(cluster.healthCheck)) return;
  const healthPath: ConfigPath = [...path, 'healthCheck'];
  exactlyOne(cluster.healthCheck, ['path', 'grpc'], healthPath, issues);
  if (has(cluster.healthCheck, 'grpc') && protocol === 'http1') {
    issues.push({ path: [...healthPath, 'grpc'], at: 'key', message: 'gRPC health checks need protocol: h2c or h2 (gRPC runs over HTTP/2)' });
  }
}

interface Bound {
  address: string;
  port: number;
  owner: string;
}

function checkListeners(config: Raw, clusterNames: Set<string>, issues: ConfigIssue[]): void {
  const admin = isRaw(config.admin) ? config.admin : {};
  const bound: Bound[] = [];
  const adminPort = admin.port ?? 9901;
  if (typeof adminPort === 'number' && adminPort > 0) {
    bound.push({ address: String(admin.address ?? '127.0.0.1'), port: adminPort, owner: 'the admin server' });
  }
  const firstIndex = new Map<string, number>();
  items(config.listeners).forEach((listener, i) => {
    if (!isRaw(listener)) return;
    const path: ConfigPath = ['listeners', i];
    const name = typeof listener.name === 'string' ? listener.name : defaultListenerName(i);
    const first = firstIndex.get(name);
    if (first === undefined) firstIndex.set(name, i);
    else issues.push(duplicate('listener', name, [...path, 'name'], ['listeners', first]));

    if (typeof listener.port === 'number' && listener.port > 0) {
      const address = String(listener.address ?? '0.0.0.0');
      const clash = bound.find((b) => b.port === listener.port && addressesOverlap(b.address, address));
      if (clash) {
        issues.push({
          path: [...path, 'port'],
          at: 'value',
          message: `${address}:${listener.port} conflicts with ${clash.owner} on ${clash.address}:${clash.port}`,
        });
      }
      bound.push({ address, port: listener.port, owner: `listener "${name}"` });
    }
    checkTlsFiles(listener.tls, [...path, 'tls'], issues);
    checkRoutes(listener.routes, name, path, clusterNames, issues);
  });
}

function addressesOverlap(a: string, b: string): boolean {
  return a === b || WILDCARD_ADDRESSES.has(a) || WILDCARD_ADDRESSES.has(b);
}

function checkRoutes(
  routes: unknown,
  listenerName: string,
  listenerPath: ConfigPath,
  clusterNames: Set<string>,
  issues: ConfigIssue[],
): void {
  const firstIndex = new Map<string, number>();
  items(routes).forEach((route, j) => {
    if (!isRaw(route)) return;
    const path: ConfigPath = [...listenerPath, 'routes', j];
    const name = typeof route.name === 'string' ? route.name : defaultRouteName(listenerName, j);
    const first = firstIndex.get(name);
    if (first === undefined) firstIndex.set(name, j);
    else issues.push(duplicate('route', name, [...path, 'name'], [...listenerPath, 'routes', first]));

    if (isRaw(route.match)) {
      exactlyOne(route.match, ['prefix', 'path', 'regex'], [...path, 'match'], issues);
      items(route.match.headers).forEach((header, k) => {
        if (isRaw(header)) {
          exactlyOne(header, ['exact', 'prefix', 'regex', 'present'], [...path, 'match', 'headers', k], issues);
        }
      });
      if (isRaw(route.rewrite) && has(route.rewrite, 'prefix') && has(route.match, 'regex')) {
        issues.push({ path: [...path, 'rewrite', 'prefix'], at: 'key', message: 'rewrite.prefix needs a prefix or path match' });
      }
    }
    exactlyOne(route, ['cluster', 'weightedClusters', 'directResponse'], path, issues);
    if (isRaw(route.auth) && isRaw(route.auth.jwt)) {
      const jwt = route.auth.jwt;
      const jwtPath = [...path, 'auth', 'jwt'];
      exactlyOne(jwt, ['jwksFile', 'jwksUri'], jwtPath, issues);
      checkJwksFile(jwt.jwksFile, [...jwtPath, 'jwksFile'], issues);
    }

    checkClusterReference(route.cluster, [...path, 'cluster'], clusterNames, issues);
    items(route.weightedClusters).forEach((entry, k) => {
      if (isRaw(entry)) {
        checkClusterReference(entry.cluster, [...path, 'weightedClusters', k, 'cluster'], clusterNames, issues);
      }
    });
  });
}

const TLS_FILE_KEYS = ['certFile', 'keyFile', 'caFile'];

function checkTlsFiles(tls: unknown, path: ConfigPath, issues: ConfigIssue[]): void {
  if (!isRaw(tls)) return;
  for (const key of TLS_FILE_KEYS) checkReadable(tls[key], [...path, key], issues);
}

/** A file tandem could not read (TLS, JWKS) would only fail at start or reload: report it with the rest. */
function checkReadable(file: unknown, path: ConfigPath, issues: ConfigIssue[]): void {
  if (typeof file !== 'string' || file === '') return;
  try {
    readFileSync(file);
  } catch (err) {
    issues.push({ path, at: 'value', message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
  }
}

/** The keys are read at load: a file that is not a JWKS would fail it. */
function checkJwksFile(file: unknown, path: ConfigPath, issues: ConfigIssue[]): void {
  const before = issues.length;
  checkReadable(file, path, issues);
  if (typeof file !== 'string' || file === '' || issues.length > before) return;
  let keys: unknown;
  try {
    keys = (JSON.parse(readFileSync(file, 'utf8')) as { keys?: unknown }).keys;
  } catch {
    keys = undefined;
  }
  if (!Array.isArray(keys)) issues.push({ path, at: 'value', message: `${file} is not a JWKS (a JSON object with a "keys" array)` });
}

function checkClusterReference(ref: unknown, path: ConfigPath, clusterNames: Set<string>, issues: ConfigIssue[]): void {
  if (typeof ref === 'string' && ref !== '' && !clusterNames.has(ref)) {
    issues.push({ path, at: 'value', message: `unknown cluster "${ref}"${didYouMean(ref, clusterNames)}` });
  }
}

function exactlyOne(o: Raw, keys: string[], path: ConfigPath, issues: ConfigIssue[]): void {
  const present = keys.filter((k) => has(o, k));
  const choices = keys.join(' | ');
  if (present.length === 0) {
    issues.push({ path, at: 'value', message: `needs one of ${choices}` });
  }
  for (const extra of present.slice(1)) {
    issues.push({
      path: [...path, extra],
      at: 'key',
      message: `only one of ${choices} may be set, "${present[0]}" is already set`,
    });
  }
}

function duplicate(kind: string, name: string, path: ConfigPath, firstPath: ConfigPath): ConfigIssue {
  return { path, at: 'value', message: `duplicate ${kind} name "${name}" (first used at ${firstPath.join('.')})` };
}
