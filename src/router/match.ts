// Route matchers, compiled once per configuration load. A matcher checks only
// the criteria its route names: absent criteria cost nothing per request.
//
// Semantics:
// - `prefix` matches whole segments (Gateway API PathPrefix): `/api` matches
//   `/api`, `/api/` and `/api/x`, not `/apix`; a prefix ending in `/`
//   matches the paths starting with it, so `/` matches every path.
// - `path` is exact; `regex` must match the whole path (JavaScript syntax,
//   no flags).
// - `host` is compared with the Host header lowercased and without its port;
//   `*.suffix` matches `a.suffix` and `b.a.suffix` but not `suffix`.
// - `methods` lists the accepted methods (Node gives them uppercase).
// - `headers`: every entry must hold. `exact`, `prefix` and `regex` (whole
//   value) test the value; `present: true` needs the header, `present: false`
//   needs it absent; an entry with only a name means `present: true`. Node
//   joins repeated request header lines with ', ' (cookie with '; '); an
//   array value (set-cookie) is joined with ', ' the same way before testing.
import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderMatchConfig, RouteMatchConfig } from '../config/types.js';

export interface MatchInput {
  method: string;
  /** lowercased, without port */
  host: string;
  /** normalized */
  path: string;
  headers: IncomingHttpHeaders;
}

export type RouteMatcher = (input: MatchInput) => boolean;

export function compileMatch(m: RouteMatchConfig): RouteMatcher {
  // cheapest and most selective checks first
  const checks: RouteMatcher[] = [];
  const path = compilePath(m);
  if (path !== undefined) checks.push(path);
  if (m.methods !== undefined && m.methods.length > 0) checks.push(compileMethods(m.methods));
  if (m.host !== undefined) checks.push(compileHost(m.host));
  for (const h of m.headers ?? []) checks.push(compileHeader(h));
  return all(checks);
}

/** Host header -> lowercase host without port (`[::1]:80` -> `[::1]`); '' when absent. */
export function hostWithoutPort(hostHeader: string | undefined): string {
  if (hostHeader === undefined) return '';
  let end = hostHeader.length;
  if (hostHeader.charCodeAt(0) === 0x5b /* [ */) {
    const close = hostHeader.indexOf(']');
    if (close !== -1) end = close + 1;
  } else {
    const colon = hostHeader.lastIndexOf(':');
    if (colon !== -1) end = colon;
  }
  const host = end === hostHeader.length ? hostHeader : hostHeader.slice(0, end);
  return host.toLowerCase();
}

function all(checks: RouteMatcher[]): RouteMatcher {
  switch (checks.length) {
    case 0:
      return () => true;
    case 1:
      return checks[0]!;
    case 2: {
      const [a, b] = checks as [RouteMatcher, RouteMatcher];
      return (input) => a(input) && b(input);
    }
    default:
      return (input) => {
        for (let i = 0; i < checks.length; i++) if (!checks[i]!(input)) return false;
        return true;
      };
  }
}

function compilePath(m: RouteMatchConfig): RouteMatcher | undefined {
  if (m.prefix !== undefined) return compilePrefix(m.prefix);
  if (m.path !== undefined) {
    const exact = m.path;
    return (input) => input.path === exact;
  }
  if (m.regex !== undefined) {
    const re = wholeMatch(m.regex);
    return (input) => re.test(input.path);
  }
  return undefined;
}

function compilePrefix(prefix: string): RouteMatcher {
  if (prefix === '/') return () => true;
  if (prefix.endsWith('/')) return (input) => input.path.startsWith(prefix);
  const len = prefix.length;
  return (input) => {
    const p = input.path;
    return p.startsWith(prefix) && (p.length === len || p.charCodeAt(len) === 0x2f);
  };
}

function compileMethods(methods: string[]): RouteMatcher {
  const upper = methods.map((x) => x.toUpperCase());
  if (upper.length === 1) {
    const only = upper[0]!;
    return (input) => input.method === only;
  }
  const set = new Set(upper);
  return (input) => set.has(input.method);
}

function compileHost(pattern: string): RouteMatcher {
  const host = pattern.toLowerCase();
  if (host.startsWith('*.')) {
    const suffix = host.slice(1); // keeps the dot: `.suffix`
    return (input) => input.host.length > suffix.length && input.host.endsWith(suffix);
  }
  return (input) => input.host === host;
}

function compileHeader(h: HeaderMatchConfig): RouteMatcher {
  const name = h.name.toLowerCase();
  if (h.exact !== undefined) {
    const exact = h.exact;
    return (input) => valueOf(input.headers[name]) === exact;
  }
  if (h.prefix !== undefined) {
    const prefix = h.prefix;
    return (input) => valueOf(input.headers[name])?.startsWith(prefix) === true;
  }
  if (h.regex !== undefined) {
    const re = wholeMatch(h.regex);
    return (input) => {
      const v = valueOf(input.headers[name]);
      return v !== undefined && re.test(v);
    };
  }
  if (h.present === false) return (input) => input.headers[name] === undefined;
  return (input) => input.headers[name] !== undefined;
}

function valueOf(v: string | string[] | undefined): string | undefined {
  return typeof v === 'object' ? v.join(', ') : v;
}

function wholeMatch(source: string): RegExp {
  return new RegExp(`^(?:${source})$`);
}
