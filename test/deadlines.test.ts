// Deadlines on fake time (test/support/fake-time.ts): when each fires is
// asserted to the millisecond. Each test builds its own queues: the shared
// ones of deadlinesOf() would keep a timer armed on a fake clock that the
// next test no longer has.

import { spawnSync } from 'node:child_process';
import { describe, expect, it, vi } from 'vitest';
import { DeadlineQueue, OwnDeadline, deadlinesOf } from '../src/proxy/deadlines.js';
import { useFakeTime } from './support/fake-time.js';

describe('deadlines', () => {
  useFakeTime();

  it('fires each deadline once, in order, exactly its duration after it was set', () => {
    const queue = new DeadlineQueue(60);
    const t0 = performance.now();
    const fired: Array<{ id: number; at: number }> = [];
    for (let id = 0; id < 5; id++) {
      if (id > 0) vi.advanceTimersByTime(15);
      queue.add((n: number) => fired.push({ id: n, at: performance.now() - t0 }), id);
    }
    // set at 0, 15, 30, 45, 60: the first is due at 60, now
    expect(fired).toEqual([{ id: 0, at: 60 }]);
    vi.advanceTimersByTime(59);
    expect(fired.map((f) => f.id)).toEqual([0, 1, 2, 3]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([0, 1, 2, 3, 4].map((id) => ({ id, at: 60 + 15 * id })));
    vi.advanceTimersByTime(1000);
    expect(fired).toHaveLength(5);
  });

  it('never fires a cancelled deadline, and the ones after it still fire on their own time', () => {
    const queue = new DeadlineQueue(50);
    const t0 = performance.now();
    const fired: Array<{ what: string; at: number }> = [];
    const record = (what: string): number => fired.push({ what, at: performance.now() - t0 });
    const first = queue.add(record, 'first');
    vi.advanceTimersByTime(25);
    queue.add(record, 'later');
    first.cancel();
    first.cancel();
    // the timer armed for the first one comes and goes; the later one waits for its own time
    vi.advanceTimersByTime(49);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([{ what: 'later', at: 75 }]);
  });

  it('keeps durations apart: a short deadline set after a long one fires first', () => {
    const fired: string[] = [];
    new DeadlineQueue(120).add((s: string) => fired.push(s), 'long');
    new DeadlineQueue(20).add((s: string) => fired.push(s), 'short');
    vi.advanceTimersByTime(20);
    expect(fired).toEqual(['short']);
    vi.advanceTimersByTime(100);
    expect(fired).toEqual(['short', 'long']);
  });

  it('ignores a cancel after the deadline fired, and arms again for the next one', () => {
    const queue = new DeadlineQueue(10);
    let count = 0;
    const d = queue.add(() => count++, null);
    vi.advanceTimersByTime(10);
    d.cancel();
    expect(count).toBe(1);
    const again = queue.add(() => count++, null);
    vi.advanceTimersByTime(10);
    expect(count).toBe(2);
    again.cancel();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('arms one Node timer per duration, however many deadlines it holds', () => {
    const queue = new DeadlineQueue(1000);
    const all = Array.from({ length: 100 }, () => queue.add(() => undefined, null));
    expect(vi.getTimerCount()).toBe(1);
    for (const d of all) d.cancel();
  });

  it('a deadline of its own fires once, its duration after it was set, says when, and leaves no timer once cancelled', () => {
    const t0 = performance.now();
    const fired: number[] = [];
    const own = new OwnDeadline(137, (at: number) => fired.push(performance.now() - at), t0);
    expect(own.at).toBe(t0 + 137);
    vi.advanceTimersByTime(136);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([137]);
    vi.advanceTimersByTime(1000);
    expect(fired).toHaveLength(1);

    const cancelled = new OwnDeadline(50, () => fired.push(-1), 0);
    expect(vi.getTimerCount()).toBe(1);
    cancelled.cancel();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(100);
    expect(fired).toEqual([137]);
  });

  it('deadlinesOf shares one queue per duration', () => {
    expect(deadlinesOf(15_000)).toBe(deadlinesOf(15_000));
    expect(deadlinesOf(15_000)).not.toBe(deadlinesOf(15_001));
  });
});

describe('deadlines on the real clock', () => {
  it('do not keep the process alive on their own', () => {
    const started = Date.now();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e',
      `import { deadlinesOf } from ${JSON.stringify(new URL('../dist/proxy/deadlines.js', import.meta.url).href)}; deadlinesOf(30000).add(() => console.log('fired'), null);`]);
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toBe('');
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
