// Access-log timestamps. Under load thousands of requests start in the same
// second: its ISO-8601 prefix (`2026-11-26T14:03:07.`) is formatted once and
// only the milliseconds are added per line.

let cachedSecond = -1;
let cachedPrefix = '';

/** `YYYY-MM-DDTHH:MM:SS.` of the second holding epoch `ms`, in UTC. */
export function isoSecondPrefix(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 20);
  }
  return cachedPrefix;
}

/** What Date.prototype.toISOString gives for epoch `ms`. */
export function isoTime(ms: number): string {
  const milli = ms % 1000;
  return `${isoSecondPrefix(ms)}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}
