import { describe, expect, it } from 'vitest';
import { compileRewrite } from '../src/router/rewrite.js';

describe('compileRewrite with a prefix match', () => {
  it.each([
    // match prefix, rewrite prefix, request path, upstream path
    ['/api/', '/', '/api/x', '/x'],
    ['/api/', '/', '/api/', '/'],
    ['/api/', '/', '/api/x/y/', '/x/y/'],
    ['/api', '/v2', '/api/x', '/v2/x'],
    ['/api', '/v2', '/api', '/v2'],
    ['/api', '/v2', '/api/', '/v2/'],
    ['/api', '/v2/', '/api/x', '/v2/x'],
    ['/api', '/v2/', '/api', '/v2'],
    ['/api/', '/v2', '/api/x', '/v2/x'],
    ['/api/', '/v2/', '/api/x', '/v2/x'],
    ['/api', '/', '/api', '/'],
    ['/api', '/', '/api/x', '/x'],
    ['/api', '', '/api/x', '/x'],
    ['/api', '', '/api', '/'],
    ['/', '/v2', '/x', '/v2/x'],
    ['/', '/v2', '/', '/v2/'],
    ['/', '/', '/x/y', '/x/y'],
    ['/a/b', '/c', '/a/b/d', '/c/d'],
    ['/api', 'v2', '/api/x', '/v2/x'],
  ])('match %j + rewrite %j: %s -> %s', (prefix, rewrite, path, want) => {
    const fn = compileRewrite({ prefix }, { prefix: rewrite });
    expect(fn).not.toBeNull();
    expect(fn!(path)).toBe(want);
  });

  it('never produces "//" at the seam', () => {
    for (const prefix of ['/api', '/api/']) {
      for (const rewrite of ['/', '/v2', '/v2/', '']) {
        const fn = compileRewrite({ prefix }, { prefix: rewrite })!;
        for (const path of ['/api', '/api/', '/api/x', '/api/x/']) {
          if (prefix.endsWith('/') && !path.startsWith(prefix)) continue;
          expect(fn(path), `${prefix} ${rewrite} ${path}`).not.toContain('//');
        }
      }
    }
  });
});

describe('compileRewrite without a path rewrite', () => {
  it('is null without rewrite or with only a host rewrite', () => {
    expect(compileRewrite({ prefix: '/api' }, undefined)).toBeNull();
    expect(compileRewrite({ prefix: '/api' }, { host: 'api.internal' })).toBeNull();
    expect(compileRewrite({ regex: '/x.*' }, { host: 'api.internal' })).toBeNull();
  });
});

describe('compileRewrite with other matches', () => {
  it('replaces the whole path on an exact path match', () => {
    expect(compileRewrite({ path: '/old' }, { prefix: '/new' })!('/old')).toBe('/new');
    expect(compileRewrite({ path: '/old' }, { prefix: '/new/' })!('/old')).toBe('/new');
    expect(compileRewrite({ path: '/old' }, { prefix: '/' })!('/old')).toBe('/');
  });

  it('refuses a regex match: there is no prefix to replace', () => {
    expect(() => compileRewrite({ regex: '/x.*' }, { prefix: '/y' })).toThrow(/regex/);
  });
});
