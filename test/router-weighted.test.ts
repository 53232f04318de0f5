import { describe, expect, it } from 'vitest';
import { compileWeighted } from '../src/router/weighted.js';

function histogram<T>(pick: () => T, n: number): Map<T, number> {
  const counts = new Map<T, number>();
  for (let i = 0; i < n; i++) {
    const v = pick();
    counts.set(v, (counts.get(v) ?? 0) + 1);
  }
  return counts;
}

describe('compileWeighted', () => {
  const N = 10_000;

  it('follows 90/10 weights within ±5% over 10k picks', () => {
    const counts = histogram(compileWeighted([{ value: 'v1', weight: 90 }, { value: 'v2', weight: 10 }]), N);
    expect(Math.abs(counts.get('v1')! / N - 0.9)).toBeLessThan(0.05);
    expect(Math.abs(counts.get('v2')! / N - 0.1)).toBeLessThan(0.05);
  });

  it('follows uneven weights across many items within ±5%', () => {
    const weights = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    const total = weights.reduce((a, b) => a + b, 0);
    const counts = histogram(compileWeighted(weights.map((weight, value) => ({ value, weight }))), N);
    for (const [value, weight] of weights.entries()) {
      expect(Math.abs((counts.get(value) ?? 0) / N - weight / total)).toBeLessThan(0.05);
    }
  });

  it('never picks an item of weight 0, wherever it sits', () => {
    const counts = histogram(
      compileWeighted([
        { value: 'zero-first', weight: 0 },
        { value: 'a', weight: 1 },
        { value: 'zero-middle', weight: 0 },
        { value: 'b', weight: 1 },
        { value: 'zero-last', weight: 0 },
      ]),
      N,
    );
    expect([...counts.keys()].sort()).toEqual(['a', 'b']);
  });

  it('returns the only item', () => {
    const pick = compileWeighted([{ value: 'only', weight: 3 }]);
    expect(new Set(Array.from({ length: 100 }, pick))).toEqual(new Set(['only']));
  });

  it('stays in range when Math.random returns its extremes', () => {
    const pick = compileWeighted([{ value: 'a', weight: 1 }, { value: 'b', weight: 2 }]);
    const random = Math.random;
    try {
      Math.random = () => 0;
      expect(pick()).toBe('a');
      Math.random = () => 1 - Number.EPSILON / 2;
      expect(pick()).toBe('b');
    } finally {
      Math.random = random;
    }
  });

  it.each([
    ['no items', []],
    ['all weights 0', [{ value: 'a', weight: 0 }]],
    ['a negative weight', [{ value: 'a', weight: -1 }, { value: 'b', weight: 2 }]],
    ['a NaN weight', [{ value: 'a', weight: Number.NaN }]],
    ['an infinite weight', [{ value: 'a', weight: Number.POSITIVE_INFINITY }]],
  ])('rejects %s', (_what, items) => {
    expect(() => compileWeighted(items)).toThrow();
  });
});
