// Fake time for tests whose only subject is waiting (ejection durations,
// breaker reset and window, health intervals, deadlines): the clock moves
// only when the test says, so timings are asserted to the millisecond and
// the test takes no wall time. tandem reads time and starts timers through
// src/clock.ts, which looks the globals up on each call. setImmediate, process.nextTick and hrtime stay real, so sockets and
// promises still run while the clock stands still.

import { afterEach, beforeEach, vi } from 'vitest';

const FAKED = ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance', 'Date'] as const;

/**
 * Every test of the calling file (or describe block) runs on fake time.
 * Register it before other afterEach hooks: hooks run in reverse order, so
 * their cleanup still sees the fake timers it must clear.
 */
export function useFakeTime(): void {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: [...FAKED] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
}

/**
 * Waits for real I/O (a socket's answer) while the fake clock stands still:
 * true once `condition` holds, false after `realMs` of real time (hrtime,
 * which the fake clock leaves alone).
 */
export async function untilReal(condition: () => boolean, realMs = 5000): Promise<boolean> {
  const until = process.hrtime.bigint() + BigInt(realMs) * 1_000_000n;
  while (!condition()) {
    if (process.hrtime.bigint() > until) return false;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return true;
}
