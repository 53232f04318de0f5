import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { RouteMatchConfig } from '../src/config/types.js';
import { compileMatch, hostWithoutPort } from '../src/router/match.js';

function input(path: string, more: { method?: string; host?: string; headers?: IncomingHttpHeaders } = {}) {
  return { method: more.method ?? 'GET', host: more.host ?? 'example.com', path, headers: more.headers ?? {} };
}

function matches(m: RouteMatchConfig, path: string, more: Parameters<typeof input>[1] = {}): boolean {
  return compileMatch(m)(input(path, more));
}

describe('prefix (whole segments)', () => {
  it.each([
    ['/api', '/api', true],
    ['/api', '/api/', true],
    ['/api', '/api/x', true],
    ['/api', '/api/x/y', true],
    ['/api', '/apix', false],
    ['/api', '/ap', false],
    ['/api', '/', false],
    ['/api', '/v1/api', false],
    ['/api/', '/api/', true],
    ['/api/', '/api/x', true],
    ['/api/', '/api', false],
    ['/api/', '/apix/', false],
    ['/', '/', true],
    ['/', '/anything/at/all', true],
    ['/a/b', '/a/b/c', true],
    ['/a/b', '/a/bc', false],
  ])('prefix %s on %s -> %s', (prefix, path, want) => {
    expect(matches({ prefix }, path)).toBe(want);
  });

  it('is case-sensitive', () => {
    expect(matches({ prefix: '/api' }, '/API')).toBe(false);
  });
});

describe('path (exact)', () => {
  it.each([
    ['/health', '/health', true],
    ['/health', '/health/', false],
    ['/health', '/healthz', false],
    ['/health', '/health/x', false],
  ])('path %s on %s -> %s', (path, p, want) => {
    expect(matches({ path }, p)).toBe(want);
  });
});

describe('regex (whole path)', () => {
  it.each([
    ['/users/[0-9]+', '/users/42', true],
    ['/users/[0-9]+', '/users/42/orders', false],
    ['/users/[0-9]+', '/v1/users/42', false],
    ['[0-9]+', '/42', false],
    ['/a|/b', '/a', true],
    ['/a|/b', '/b', true],
    // the alternation is grouped before anchoring: `/ab` must not match via `^/a`
    ['/a|/b', '/ab', false],
    ['/a|/b', '/xb', false],
    ['/.*\\.png', '/img/x.png', true],
    ['/.*\\.png', '/img/x.png.txt', false],
  ])('regex %s on %s -> %s', (regex, path, want) => {
    expect(matches({ regex }, path)).toBe(want);
  });

  it('gives the same answer on repeated calls (no lastIndex state)', () => {
    const m = compileMatch({ regex: '/x[0-9]' });
    const results = Array.from({ length: 4 }, () => m(input('/x1')));
    expect(results).toEqual([true, true, true, true]);
  });

  it('throws at compile time on an invalid regex', () => {
    expect(() => compileMatch({ regex: '/(' })).toThrow(SyntaxError);
  });
});

describe('host', () => {
  it.each([
    ['orders.internal', 'orders.internal', true],
    ['Orders.Internal', 'orders.internal', true],
    ['orders.internal', 'other.internal', false],
    ['orders.internal', 'x.orders.internal', false],
    ['*.example.com', 'a.example.com', true],
    ['*.example.com', 'b.a.example.com', true],
    ['*.example.com', 'example.com', false],
    ['*.example.com', 'aexample.com', false],
    ['*.Example.COM', 'a.example.com', true],
    ['*.example.com', '', false],
  ])('host %s on %s -> %s', (host, h, want) => {
    expect(matches({ prefix: '/', host }, '/', { host: h })).toBe(want);
  });
});

describe('hostWithoutPort', () => {
  it.each([
    [undefined, ''],
    ['', ''],
    ['example.com', 'example.com'],
    ['Example.COM:8080', 'example.com'],
    ['example.com:', 'example.com'],
    ['127.0.0.1:80', '127.0.0.1'],
    ['[::1]:80', '[::1]'],
    ['[::1]', '[::1]'],
    ['[FE80::1]:443', '[fe80::1]'],
  ])('%j -> %j', (header, want) => {
    expect(hostWithoutPort(header)).toBe(want);
  });
});

describe('methods', () => {
  it('accepts only the listed methods', () => {
    const m = compileMatch({ prefix: '/', methods: ['GET', 'POST'] });
    expect(m(input('/', { method: 'GET' }))).toBe(true);
    expect(m(input('/', { method: 'POST' }))).toBe(true);
    expect(m(input('/', { method: 'PUT' }))).toBe(false);
    expect(m(input('/', { method: 'DELETE' }))).toBe(false);
  });

  it('handles a single method and lowercase configuration', () => {
    const m = compileMatch({ prefix: '/', methods: ['delete'] });
    expect(m(input('/', { method: 'DELETE' }))).toBe(true);
    expect(m(input('/', { method: 'GET' }))).toBe(false);
  });
});

describe('headers', () => {
  const route = (h: NonNullable<RouteMatchConfig['headers']>[number]) => compileMatch({ prefix: '/', headers: [h] });

  it('exact, on a name configured in any case', () => {
    const m = route({ name: 'X-Canary', exact: 'true' });
    expect(m(input('/', { headers: { 'x-canary': 'true' } }))).toBe(true);
    expect(m(input('/', { headers: { 'x-canary': 'TRUE' } }))).toBe(false);
    expect(m(input('/', { headers: { 'x-canary': 'true ' } }))).toBe(false);
    expect(m(input('/', { headers: {} }))).toBe(false);
  });

  it('prefix', () => {
    const m = route({ name: 'user-agent', prefix: 'curl/' });
    expect(m(input('/', { headers: { 'user-agent': 'curl/8.5.0' } }))).toBe(true);
    expect(m(input('/', { headers: { 'user-agent': 'Mozilla/5.0' } }))).toBe(false);
    expect(m(input('/', { headers: {} }))).toBe(false);
  });

  it('regex matches the whole value', () => {
    const m = route({ name: 'x-version', regex: 'v[0-9]+' });
    expect(m(input('/', { headers: { 'x-version': 'v12' } }))).toBe(true);
    expect(m(input('/', { headers: { 'x-version': 'v12-beta' } }))).toBe(false);
    expect(m(input('/', { headers: { 'x-version': 'av12' } }))).toBe(false);
    expect(m(input('/', { headers: {} }))).toBe(false);
  });

  it('present: true and a name alone require the header, even empty', () => {
    for (const m of [route({ name: 'x-debug', present: true }), route({ name: 'x-debug' })]) {
      expect(m(input('/', { headers: { 'x-debug': '' } }))).toBe(true);
      expect(m(input('/', { headers: { 'x-debug': '1' } }))).toBe(true);
      expect(m(input('/', { headers: {} }))).toBe(false);
    }
  });

  it('present: false requires the header to be absent', () => {
    const m = route({ name: 'x-debug', present: false });
    expect(m(input('/', { headers: {} }))).toBe(true);
    expect(m(input('/', { headers: { 'x-debug': '1' } }))).toBe(false);
  });

  it('joins an array value with ", " as Node joins repeated lines', () => {
    const m = route({ name: 'set-cookie', exact: 'a=1, b=2' });
    expect(m(input('/', { headers: { 'set-cookie': ['a=1', 'b=2'] } }))).toBe(true);
    expect(m(input('/', { headers: { 'set-cookie': ['a=1'] } }))).toBe(false);
  });

  it('requires every header entry', () => {
    const m = compileMatch({
      prefix: '/',
      headers: [
        { name: 'x-a', exact: '1' },
        { name: 'x-b', present: true },
        { name: 'x-c', present: false },
      ],
    });
    expect(m(input('/', { headers: { 'x-a': '1', 'x-b': 'y' } }))).toBe(true);
    expect(m(input('/', { headers: { 'x-a': '2', 'x-b': 'y' } }))).toBe(false);
    expect(m(input('/', { headers: { 'x-a': '1' } }))).toBe(false);
    expect(m(input('/', { headers: { 'x-a': '1', 'x-b': 'y', 'x-c': 'z' } }))).toBe(false);
  });
});

describe('combined criteria', () => {
  const m = compileMatch({
    prefix: '/orders',
    host: 'orders.internal',
    methods: ['GET', 'POST'],
    headers: [{ name: 'x-canary', exact: 'true' }],
  });
  const ok = { method: 'POST', host: 'orders.internal', headers: { 'x-canary': 'true' } };

  it('matches when every criterion holds', () => {
    expect(m(input('/orders/1', ok))).toBe(true);
  });

  it.each([
    ['path', input('/ordersx', ok)],
    ['method', input('/orders', { ...ok, method: 'PUT' })],
    ['host', input('/orders', { ...ok, host: 'other' })],
    ['header', input('/orders', { ...ok, headers: {} })],
  ])('fails on the %s alone', (_what, i) => {
    expect(m(i)).toBe(false);
  });

  it('with no criterion at all matches everything', () => {
    expect(compileMatch({})(input('/x'))).toBe(true);
  });
});
