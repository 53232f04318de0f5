// The one place tandem's own resilience code (deadlines, rate limits,
// breaker, outlier detection, health checks, DNS refresh) reads the time and
// starts timers. Each call looks up the global (`performance`, `setTimeout`, ...)
// when it runs, never a copy taken at import, so a test that installs fake
// timers moves all of them at once (test/support/fake-time.ts).
// The functions are small enough for V8 to inline: the request path pays no
// extra call for them.

export type Timer = NodeJS.Timeout;

/** Monotonic milliseconds, for durations: never `Date.now()`, which jumps with the wall clock. */
export function now(): number {
  return performance.now();
}

/**
 * What `performance.now()` lacks to be the same timeline in every thread of
 * the process: each worker thread counts from its own start, while the
 * monotonic clock behind hrtime is one. Whole ms, so that durations between
 * readings stay exact integers under a fake clock.
 */
const threadOffset = Math.round(Number(process.hrtime.bigint() / 1000n) / 1000 - performance.now());

/**
 * Monotonic milliseconds that every worker thread reads alike to within a
 * millisecond (each rounds its own offset): for times stored in memory
 * shared between threads (rate-limit buckets, breakers), whose readers
 * take an elapsed time below zero as zero.
 */
export function sharedNow(): number {
  return performance.now() + threadOffset;
}

/**
 * Calls `fn` once after `ms`. Unreferenced: tandem's own timers never keep
 * the process alive (its servers and in-flight sockets do).
 */
export function after(ms: number, fn: () => void): Timer {
  return setTimeout(fn, ms).unref();
}

/** Calls `fn` every `ms`, unreferenced as `after`. */
export function every(ms: number, fn: () => void): Timer {
  return setInterval(fn, ms).unref();
}

/** Stops a timer of `after`; nothing for undefined or one that already ran. */
export function cancel(timer: Timer | undefined): void {
  clearTimeout(timer);
}

/** Stops a timer of `every` (fake timers, unlike Node, tell the two kinds apart). */
export function cancelEvery(timer: Timer): void {
  clearInterval(timer);
}
