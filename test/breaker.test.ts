// The error-rate breaker on fake time (test/support/fake-time.ts): its
// window and its reset timer read the time through src/clock.ts, so both
// move with the fake clock and every duration is asserted to the
// millisecond. test/shared-state.test.ts runs it across worker threads.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorRateBreaker, type BreakerState } from '../src/cluster/breaker.js';
import { allocateCluster, breakerOffset, SOLE_WORKER } from '../src/workers/shared-state.js';
import { useFakeTime } from './support/fake-time.js';

useFakeTime();

const breakers: ErrorRateBreaker[] = [];

afterEach(() => {
  for (const breaker of breakers.splice(0)) breaker.close();
});

const RESET_TIMEOUT = 10_000;

interface Setup {
  breaker: ErrorRateBreaker;
  changes: BreakerState[];
}

function setup(overrides: { errorThresholdPercentage?: number; volumeThreshold?: number; window?: number } = {}): Setup {
  const changes: BreakerState[] = [];
  const breaker = new ErrorRateBreaker(
    {
      maxRequests: 1024,
      maxPendingRequests: 1024,
      maxRetries: 3,
      errorThresholdPercentage: 50,
      volumeThreshold: 4,
      window: 10_000,
      resetTimeout: RESET_TIMEOUT,
      ...overrides,
    },
    (state) => changes.push(state),
    allocateCluster(1),
    breakerOffset(1),
    SOLE_WORKER,
  );
  breakers.push(breaker);
  return { breaker, changes };
}

/** Lets each outcome through allow() first, as the proxy does. */
function finish(breaker: ErrorRateBreaker, outcomes: (boolean | null)[]): void {
  for (const ok of outcomes) {
    expect(breaker.allow()).toBe(true);
    breaker.record(ok);
  }
}

/** Open now: half-open exactly RESET_TIMEOUT later, not a millisecond before. */
function expectHalfOpenAfterResetTimeout(breaker: ErrorRateBreaker): void {
  expect(breaker.state).toBe('open');
  vi.advanceTimersByTime(RESET_TIMEOUT - 1);
  expect(breaker.state).toBe('open');
  expect(breaker.allow()).toBe(false);
  vi.advanceTimersByTime(1);
  expect(breaker.state).toBe('half_open');
}

/** Opens the breaker with enough failures, then lets the reset timeout pass. */
function halfOpen(setupResult: Setup): void {
  finish(setupResult.breaker, [false, false, false, false]);
  expectHalfOpenAfterResetTimeout(setupResult.breaker);
}

describe('ErrorRateBreaker: opening rule', () => {
  it('stays closed under the volume threshold even at 100% failures', () => {
    const { breaker, changes } = setup({ volumeThreshold: 5 });
    finish(breaker, [false, false, false, false]);
    expect(breaker.state).toBe('closed');
    expect(breaker.allow()).toBe(true);
    expect(changes).toEqual([]);
  });

  it('opens once the volume is reached with a failed share over the threshold, and then rejects', () => {
    const { breaker, changes } = setup();
    finish(breaker, [false, true, false]);
    expect(breaker.state).toBe('closed');
    finish(breaker, [false]);
    expect(breaker.state).toBe('open');
    expect(changes).toEqual(['open']);
    expect(breaker.allow()).toBe(false);
    expect(breaker.allow()).toBe(false);
  });

  it('does not open when the failed share is exactly the threshold', () => {
    const { breaker, changes } = setup();
    // success first, so the share after every failure is exactly 50%
    for (let i = 0; i < 10; i++) finish(breaker, [true, false]);
    expect(breaker.state).toBe('closed');
    finish(breaker, [false]);
    expect(breaker.state).toBe('open');
    expect(changes).toEqual(['open']);
  });

  it('compares exactly where floating point would not (7 of 25 at 28%)', () => {
    const { breaker } = setup({ errorThresholdPercentage: 28, volumeThreshold: 25 });
    finish(breaker, [...Array<boolean>(18).fill(true), ...Array<boolean>(7).fill(false)]);
    expect(breaker.state).toBe('closed');
    finish(breaker, [false]);
    expect(breaker.state).toBe('open');
  });

  it('opens on the success that brings the volume to the threshold when the share is over it', () => {
    const { breaker } = setup();
    finish(breaker, [false, false, false]);
    expect(breaker.state).toBe('closed');
    finish(breaker, [true]);
    expect(breaker.state).toBe('open');
  });

  it('counts requests without a verdict in neither the volume nor the failures', () => {
    const { breaker } = setup();
    finish(breaker, [false, false, false, null, null, null]);
    expect(breaker.state).toBe('closed');
  });

  it('still counts an outcome up to the end of its bucket\'s window', () => {
    const { breaker } = setup({ window: 1000 }); // buckets of 100 ms
    finish(breaker, [false, false, false]);
    vi.advanceTimersByTime(999);
    finish(breaker, [false]);
    expect(breaker.state).toBe('open');
  });

  it('forgets outcomes once their bucket leaves the window: window after the bucket began', () => {
    const { breaker } = setup({ window: 1000 });
    finish(breaker, [false, false, false]);
    vi.advanceTimersByTime(1000);
    finish(breaker, [false]);
    expect(breaker.state).toBe('closed');
    finish(breaker, [false, false]);
    expect(breaker.state).toBe('closed');
    finish(breaker, [false]);
    expect(breaker.state).toBe('open');
  });

  it('an outcome recorded late in its bucket ages out just over 9/10 of the window later', () => {
    const { breaker } = setup({ window: 1000 });
    vi.advanceTimersByTime(99);
    finish(breaker, [false, false, false]);
    vi.advanceTimersByTime(901);
    finish(breaker, [false]);
    expect(breaker.state).toBe('closed');
  });
});

describe('ErrorRateBreaker: half-open', () => {
  it('lets exactly one trial through after resetTimeout', () => {
    const s = setup();
    halfOpen(s);
    expect(s.changes).toEqual(['open', 'half_open']);
    expect(s.breaker.allow()).toBe(true);
    expect(s.breaker.allow()).toBe(false);
    expect(s.breaker.allow()).toBe(false);
  });

  it('closes on a successful trial with an empty window', () => {
    const s = setup();
    halfOpen(s);
    finish(s.breaker, [true]);
    expect(s.breaker.state).toBe('closed');
    expect(s.changes).toEqual(['open', 'half_open', 'closed']);
    // The four failures before opening, or the trial's success, would make
    // these three reach the volume over the threshold.
    finish(s.breaker, [false, false, false]);
    expect(s.breaker.state).toBe('closed');
    finish(s.breaker, [false]);
    expect(s.breaker.state).toBe('open');
    expect(s.changes).toEqual(['open', 'half_open', 'closed', 'open']);
  });

  it('reopens on a failed trial for another resetTimeout', () => {
    const s = setup();
    halfOpen(s);
    finish(s.breaker, [false]);
    expect(s.breaker.allow()).toBe(false);
    expectHalfOpenAfterResetTimeout(s.breaker);
    expect(s.changes).toEqual(['open', 'half_open', 'open', 'half_open']);
    expect(s.breaker.allow()).toBe(true);
  });

  it('releases the trial without deciding when it has no verdict', () => {
    const s = setup();
    halfOpen(s);
    finish(s.breaker, [null]);
    expect(s.breaker.state).toBe('half_open');
    expect(s.breaker.allow()).toBe(true);
    expect(s.breaker.allow()).toBe(false);
    s.breaker.record(true);
    expect(s.breaker.state).toBe('closed');
    expect(s.changes).toEqual(['open', 'half_open', 'closed']);
  });

  it('ignores outcomes of earlier requests that end while open or with no trial out', () => {
    const s = setup();
    expect(s.breaker.allow()).toBe(true);
    expect(s.breaker.allow()).toBe(true);
    finish(s.breaker, [false, false, false, false]);
    expect(s.breaker.state).toBe('open');
    s.breaker.record(true);
    expect(s.breaker.state).toBe('open');
    vi.advanceTimersByTime(RESET_TIMEOUT);
    expect(s.breaker.state).toBe('half_open');
    s.breaker.record(true);
    expect(s.breaker.state).toBe('half_open');
    expect(s.breaker.allow()).toBe(true);
    expect(s.changes).toEqual(['open', 'half_open']);
  });

  it('goes half-open exactly resetTimeout after opening, not before', () => {
    const s = setup();
    vi.advanceTimersByTime(12_345); // opening later than construction: the timer starts at the opening
    halfOpen(s);
  });
});

describe('ErrorRateBreaker: close()', () => {
  it('clears its reset timer', () => {
    const { breaker } = setup({ window: 1000 });
    finish(breaker, [false, false, false, false]);
    expect(breaker.state).toBe('open');
    // the window needs no timer: its buckets are numbered by the clock
    expect(vi.getTimerCount()).toBe(1);
    breaker.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('stops the reset timer: a closed breaker never goes half-open', () => {
    const s = setup();
    finish(s.breaker, [false, false, false, false]);
    s.breaker.close();
    vi.advanceTimersByTime(RESET_TIMEOUT * 3);
    expect(s.changes).toEqual(['open']);
    expect(s.breaker.allow()).toBe(false);
    s.breaker.record(false);
    expect(s.changes).toEqual(['open']);
  });
});
