import { describe, expect, it } from 'vitest';
import { normalizePath, splitTarget } from '../src/router/normalize.js';

describe('normalizePath', () => {
  it.each([
    ['/', '/'],
    ['/a/b', '/a/b'],
    ['/a/b/', '/a/b/'],
    ['/a/./b', '/a/b'],
    ['/a/b/.', '/a/b/'],
    ['/a/b/..', '/a/'],
    ['/a/b/../c', '/a/c'],
    ['/public/../admin', '/admin'],
    ['/a/b/../../c', '/c'],
    ['/..', '/'],
    ['/../a', '/a'],
    ['/a/../../../b', '/b'],
    ['/a/..', '/'],
    ['/.', '/'],
    ['/./', '/'],
    ['//a', '/a'],
    ['/a//b', '/a/b'],
    ['/a///b//', '/a/b/'],
    ['//', '/'],
    ['/a/%2e/b', '/a/b'],
    ['/a/%2E%2E/b', '/b'],
    ['/public/%2e%2e/admin', '/admin'],
    ['/public/.%2e/admin', '/admin'],
    ['/public/%2E./admin', '/admin'],
    ['/a/%2e', '/a/'],
    ['/a/./../b//./c', '/b/c'],
  ])('%s -> %s', (input, want) => {
    expect(normalizePath(input)).toBe(want);
  });

  it.each([
    '/a/b',
    '/a/b/',
    '/a.b/c..d/.e/f.',
    '/...',
    '/a/.../b',
    '/a%2eb',
    '/%2e%2e%2e',
    '/a%2Fb',
    '/%7Euser',
    '/a;b=c',
    '/a:b@c!$&\'()*+,=',
  ])('returns %s unchanged and identical', (input) => {
    // a fresh string per call: identity shows that no copy was made
    const path = `${input}`;
    expect(normalizePath(path)).toBe(input);
    expect(Object.is(normalizePath(path), path)).toBe(true);
  });

  it.each([
    ['', 'empty'],
    ['a/b', 'relative'],
    ['*', 'asterisk-form'],
    ['http://host/a', 'absolute-form'],
    ['/a b', 'raw space'],
    ['/a\u0000b', 'NUL'],
    ['/a\r\nb', 'CR LF'],
    ['/a\tb', 'tab'],
    ['/a\u007fb', 'DEL'],
    ['/caf\u00e9', 'non-ASCII'],
    ['/a#frag', 'fragment'],
    ['/a%', 'truncated escape'],
    ['/a%2', 'truncated escape'],
    ['/a%zz', 'non-hex escape'],
    ['/a%g1/b', 'non-hex escape'],
    ['/../a%', 'bad escape in a dirty path'],
  ])('rejects %j (%s)', (input) => {
    expect(normalizePath(input)).toBeNull();
  });

  it('is idempotent', () => {
    for (const p of ['/a/./b/../c//d/', '/%2e%2e/x', '/a/b/..', '//x//y']) {
      const once = normalizePath(p)!;
      expect(normalizePath(once)).toBe(once);
    }
  });
});

describe('splitTarget', () => {
  it.each([
    ['/a/b', '/a/b', ''],
    ['/a/b?', '/a/b', '?'],
    ['/a?x=1&y=2', '/a', '?x=1&y=2'],
    ['/a?x=/../b?c', '/a', '?x=/../b?c'],
    ['/../a?%2e%2e', '/../a', '?%2e%2e'],
  ])('%s', (target, path, query) => {
    expect(splitTarget(target)).toEqual({ path, query });
  });

  it('leaves the query untouched while the path is normalized', () => {
    const { path, query } = splitTarget('/a/./b/..//c?next=/x/../y//z');
    expect(normalizePath(path)! + query).toBe('/a/c?next=/x/../y//z');
  });
});
