import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorRateBreaker, type BreakerState } from '../src/cluster/breaker.js';

const breakers: ErrorRateBreaker[] = [];

afterEach(() => {
  for (const breaker of breakers.splice(0)) breaker.close();
  vi.restoreAllMocks();
});

interface Setup {
  breaker: ErrorRateBreaker;
  changes: BreakerState[];
}

function setup(overrides: { errorThresholdPercentage?: number; volumeThreshold?: number; window?: number; resetTimeout?: number } = {}): Setup {
  const changes: BreakerState[] = [];
  const breaker = new ErrorRateBreaker(
    {
      maxRequests: 1024,
      maxPendingRequests: 1024,
      maxRetries: 3,
      errorThresholdPercentage: 50,
      volumeThreshold: 4,
      window: 10_000,
      resetTimeout: 10_000,
      ...overrides,
    },
    (state) => changes.push(state),
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

async function waitForState(breaker: ErrorRateBreaker, state: BreakerState, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (breaker.state !== state && Date.now() < deadline) await sleep(5);
  expect(breaker.state).toBe(state);
}

/** Opens the breaker with enough failures, then waits for the reset timeout. */
async function halfOpen(setupResult: Setup): Promise<void> {
  finish(setupResult.breaker, [false, false, false, false]);
  expect(setupResult.breaker.state).toBe('open');
  await waitForState(setupResult.breaker, 'half_open', 2000);
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

  it('still counts outcomes recorded earlier inside the window', async () => {
    const { breaker } = setup({ window: 2000 });
    finish(breaker, [false, false, false]);
    await sleep(100);
    finish(breaker, [false]);
    expect(breaker.state).toBe('open');
  });

  it('forgets outcomes older than the window', async () => {
    const { breaker } = setup({ window: 100 });
    finish(breaker, [false, false, false]);
    await sleep(300);
    finish(breaker, [false]);
    expect(breaker.state).toBe('closed');
    finish(breaker, [false, false]);
    expect(breaker.state).toBe('closed');
    finish(breaker, [false]);
    expect(breaker.state).toBe('open');
  });
});

describe('ErrorRateBreaker: half-open', () => {
  it('lets exactly one trial through after resetTimeout', async () => {
    const s = setup({ resetTimeout: 40 });
    await halfOpen(s);
    expect(s.changes).toEqual(['open', 'half_open']);
    expect(s.breaker.allow()).toBe(true);
    expect(s.breaker.allow()).toBe(false);
    expect(s.breaker.allow()).toBe(false);
  });

  it('closes on a successful trial with an empty window', async () => {
    const s = setup({ resetTimeout: 40 });
    await halfOpen(s);
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

  it('reopens on a failed trial for another resetTimeout', async () => {
    const s = setup({ resetTimeout: 40 });
    await halfOpen(s);
    finish(s.breaker, [false]);
    expect(s.breaker.state).toBe('open');
    expect(s.breaker.allow()).toBe(false);
    await waitForState(s.breaker, 'half_open', 2000);
    expect(s.changes).toEqual(['open', 'half_open', 'open', 'half_open']);
    expect(s.breaker.allow()).toBe(true);
  });

  it('releases the trial without deciding when it has no verdict', async () => {
    const s = setup({ resetTimeout: 40 });
    await halfOpen(s);
    finish(s.breaker, [null]);
    expect(s.breaker.state).toBe('half_open');
    expect(s.breaker.allow()).toBe(true);
    expect(s.breaker.allow()).toBe(false);
    s.breaker.record(true);
    expect(s.breaker.state).toBe('closed');
    expect(s.changes).toEqual(['open', 'half_open', 'closed']);
  });

  it('ignores outcomes of earlier requests that end while open or with no trial out', async () => {
    const s = setup({ resetTimeout: 40 });
    expect(s.breaker.allow()).toBe(true);
    expect(s.breaker.allow()).toBe(true);
    finish(s.breaker, [false, false, false, false]);
    expect(s.breaker.state).toBe('open');
    s.breaker.record(true);
    expect(s.breaker.state).toBe('open');
    await waitForState(s.breaker, 'half_open', 2000);
    s.breaker.record(true);
    expect(s.breaker.state).toBe('half_open');
    expect(s.breaker.allow()).toBe(true);
    expect(s.changes).toEqual(['open', 'half_open']);
  });

  it('does not go half-open before resetTimeout', async () => {
    const s = setup({ resetTimeout: 300 });
    finish(s.breaker, [false, false, false, false]);
    await sleep(100);
    expect(s.breaker.state).toBe('open');
    expect(s.breaker.allow()).toBe(false);
    await waitForState(s.breaker, 'half_open', 3000);
  });
});

describe('ErrorRateBreaker: close()', () => {
  it('clears every timer it or opossum started', () => {
    const started = [vi.spyOn(globalThis, 'setTimeout'), vi.spyOn(globalThis, 'setInterval')];
    const clearTimeout = vi.spyOn(globalThis, 'clearTimeout');
    const clearInterval = vi.spyOn(globalThis, 'clearInterval');
    const { breaker } = setup({ window: 1000, resetTimeout: 10_000 });
    finish(breaker, [false, false, false, false]);
    expect(breaker.state).toBe('open');
    breaker.close();

    const timers = started.flatMap((spy) => spy.mock.results.map((result) => result.value as unknown));
    const cleared = new Set([...clearTimeout.mock.calls, ...clearInterval.mock.calls].map((args) => args[0] as unknown));
    // the rolling-window rotation and opossum's reset timer
    expect(timers.length).toBeGreaterThanOrEqual(2);
    for (const timer of timers) expect(cleared.has(timer)).toBe(true);
  });

  it('stops the reset timer: a closed breaker never goes half-open', async () => {
    const s = setup({ resetTimeout: 30 });
    finish(s.breaker, [false, false, false, false]);
    s.breaker.close();
    await sleep(150);
    expect(s.changes).toEqual(['open']);
    expect(s.breaker.allow()).toBe(false);
    s.breaker.record(false);
    expect(s.changes).toEqual(['open']);
  });
});
