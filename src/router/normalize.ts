// Request-target handling for routing. Routes must see the same path the
// upstream will resolve, otherwise `/public/../admin` slips past an `/admin`
// rule; so dot segments and repeated slashes are resolved before matching and
// the upstream receives the normalized path.
//
// Rules (RFC 3986 §5.2.4 remove_dot_segments, plus slash merging as Envoy's
// merge_slashes):
// - `.` segments are dropped, `..` drops the segment before it; `..` above
//   the root stays at the root (`/../a` -> `/a`).
// - A segment written with percent-encoded dots (`%2e`, `%2E`, `.%2e`,
//   `%2E%2e`, ...) counts as a dot segment, since many upstreams decode
//   before resolving. Other escapes (`%2F` included) are left as they are.
// - Runs of `/` become one `/`.
// - A path that ended in a slash or in a dot segment keeps a trailing slash
//   (`/a/b/..` -> `/a/`), as RFC 3986 resolution gives.
// - Rejected (null): targets not starting with `/` (absolute-form, `*`),
//   control characters, space, DEL, non-ASCII (a path is ASCII; anything
//   else must be percent-encoded), `#`, and `%` not followed by two hex
//   digits.

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const HASH = 0x23;

/** Path of a request target (the part before '?'), normalized; null when it is not a valid origin-form path. Returns the input itself when nothing changes. */
export function normalizePath(path: string): string | null {
  const state = scan(path);
  if (state === INVALID) return null;
  if (state === CLEAN) return path;
  return resolve(path);
}

/** Splits a raw request target into the path and the query ('?...' including the '?', or ''). */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  if (q === -1) return { path: target, query: '' };
  return { path: target.slice(0, q), query: target.slice(q) };
}

const CLEAN = 0;
const DIRTY = 1;
const INVALID = 2;

/** One pass without allocation: is the path valid, and does it need rewriting? */
function scan(path: string): number {
  const n = path.length;
  if (n === 0 || path.charCodeAt(0) !== SLASH) return INVALID;
  let state = CLEAN;
  for (let i = 0; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c === SLASH) {
      if (state === CLEAN) {
        const next = i + 1 < n ? path.charCodeAt(i + 1) : -1;
        if (next === SLASH) state = DIRTY;
        else if ((next === DOT || next === PERCENT) && dotSegmentKind(path, i + 1, segmentEnd(path, i + 1)) !== 0) state = DIRTY;
      }
    } else if (c === PERCENT) {
      if (i + 2 >= n || !isHex(path.charCodeAt(i + 1)) || !isHex(path.charCodeAt(i + 2))) return INVALID;
      i += 2;
    } else if (c <= 0x20 || c >= 0x7f || c === HASH) {
      return INVALID;
    }
  }
  return state;
}

function resolve(path: string): string {
  const segments = path.split('/');
  const kept: string[] = [];
  let trailingSlash = false;
  // segments[0] is the empty string before the leading '/'
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    const last = i === segments.length - 1;
    const kind = dotSegmentKind(segment, 0, segment.length);
    if (segment.length === 0 || kind === 1) {
      trailingSlash = last;
    } else if (kind === 2) {
      kept.pop();
      trailingSlash = last;
    } else {
      kept.push(segment);
      trailingSlash = false;
    }
  }
  if (kept.length === 0) return '/';
  const joined = '/' + kept.join('/');
  return trailingSlash ? joined + '/' : joined;
}

function segmentEnd(path: string, from: number): number {
  const end = path.indexOf('/', from);
  return end === -1 ? path.length : end;
}

/** 1 for a `.` segment, 2 for `..` (either possibly percent-encoded), 0 otherwise. */
function dotSegmentKind(s: string, start: number, end: number): number {
  let dots = 0;
  let i = start;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c === DOT) {
      i += 1;
    } else if (c === PERCENT && i + 3 <= end && s.charCodeAt(i + 1) === 0x32 && (s.charCodeAt(i + 2) | 0x20) === 0x65) {
      i += 3;
    } else {
      return 0;
    }
    dots += 1;
    if (dots > 2) return 0;
  }
  return dots;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);
}
