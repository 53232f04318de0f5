import type { HashOnConfig } from '../../config/types.js';
import { hash32 } from '../hash.js';
import type { PickContext } from './types.js';

/** Hashes the request's ring key; -1 when the request does not carry it. */
export type KeyHasher = (ctx: PickContext) => number;

const MISSING = -1;

export function keyHasherFor(hashOn: HashOnConfig | undefined): KeyHasher | undefined {
  if (hashOn?.header !== undefined) {
    // Node lower-cases incoming header names.
    const name = hashOn.header.toLowerCase();
    return (ctx) => hashHeader(ctx.headers[name]);
  }
  if (hashOn?.cookie !== undefined) {
    const name = hashOn.cookie;
    return (ctx) => {
      const cookie = ctx.headers.cookie;
      return cookie === undefined ? MISSING : hashCookie(cookie, name);
    };
  }
  if (hashOn?.clientIp === true) {
    return (ctx) => (ctx.clientIp === '' ? MISSING : hash32(ctx.clientIp));
  }
  return undefined;
}

function hashHeader(value: string | string[] | undefined): number {
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text === '' ? MISSING : hash32(text);
}

/** Finds `name` among `a=1; b=2` pairs and hashes its value in place. */
export function hashCookie(header: string, name: string): number {
  let pos = 0;
  while (pos < header.length) {
    let end = header.indexOf(';', pos);
    if (end < 0) end = header.length;
    const eq = header.indexOf('=', pos);
    if (eq >= 0 && eq < end) {
      const nameStart = skipSpaces(header, pos, eq);
      const nameEnd = trimSpaces(header, nameStart, eq);
      if (nameEnd - nameStart === name.length && header.startsWith(name, nameStart)) {
        let valueStart = skipSpaces(header, eq + 1, end);
        let valueEnd = trimSpaces(header, valueStart, end);
        if (valueEnd - valueStart >= 2 && header[valueStart] === '"' && header[valueEnd - 1] === '"') {
          valueStart++;
          valueEnd--;
        }
        return valueEnd > valueStart ? hash32(header, valueStart, valueEnd) : MISSING;
      }
    }
    pos = end + 1;
  }
  return MISSING;
}

function skipSpaces(text: string, from: number, to: number): number {
  while (from < to && (text[from] === ' ' || text[from] === '\t')) from++;
  return from;
}

function trimSpaces(text: string, from: number, to: number): number {
  while (to > from && (text[to - 1] === ' ' || text[to - 1] === '\t')) to--;
  return to;
}
