import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AccessLogEntry } from '../src/observability/access-log.js';
import { encodeJsonLine, jsonLineBound } from '../src/observability/json-line.js';

/** What JSON.stringify writes for the entry, fields in CONTRACT §9's order. */
function reference(e: AccessLogEntry): string {
  const { time, ...rest } = e;
  return `${JSON.stringify({ time: new Date(time).toISOString(), ...rest })}\n`;
}

function encode(e: AccessLogEntry): string {
  const buf = Buffer.alloc(jsonLineBound(e));
  const end = encodeJsonLine(e, buf, 0);
  return buf.toString('utf8', 0, end);
}

const text = fc.oneof(fc.string({ unit: 'grapheme-ascii' }), fc.string({ unit: 'binary' }), fc.constantFrom('', '"', '\\', '\u0000', '\u007f', 'é€😀', '\ud800'));
const nullableText = fc.option(text, { nil: null });
const micros = fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 2 ** 40 }));
const entry: fc.Arbitrary<AccessLogEntry> = fc.record({
  time: fc.integer({ min: 0, max: Date.UTC(9999, 11, 31) }),
  requestId: text,
  traceId: text,
  spanId: nullableText,
  clientIp: text,
  method: text,
  path: text,
  protocol: fc.constantFrom('HTTP/1.0', 'HTTP/1.1', 'HTTP/2'),
  status: fc.integer({ min: 100, max: 599 }),
  grpcStatus: fc.option(fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: 999_999_999 })), { nil: null }),
  bytesIn: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.maxSafeNat()),
  bytesOut: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.maxSafeNat()),
  durationMs: micros.map((m) => m / 1000),
  upstreamMs: fc.option(micros.map((m) => m / 1000), { nil: null }),
  listener: text,
  route: nullableText,
  cluster: nullableText,
  endpoint: nullableText,
  attempts: fc.integer({ min: 0, max: 12 }),
  flags: fc.array(fc.constantFrom('NR', 'UF', 'UR', 'UT', 'UH', 'UO', 'URX', 'DC', 'DI'), { maxLength: 4 }),
});

describe('JSON access-log line', () => {
  it('is byte for byte what JSON.stringify gives, for any values', () => {
    fc.assert(
      fc.property(entry, (e) => {
        expect(encode(e)).toBe(reference(e));
      }),
      { numRuns: 2000, seed: 20261126 },
    );
  });

  it('stays within its bound with every character escaped or multi-byte', () => {
    const worst = '\u0001'.repeat(50) + '😀'.repeat(50) + '\ud800'.repeat(50);
    const e: AccessLogEntry = {
      time: Date.UTC(2026, 10, 26), requestId: worst, traceId: worst, spanId: worst, clientIp: worst, method: worst, path: worst,
      protocol: 'HTTP/1.1', status: 599, grpcStatus: 999_999_999, bytesIn: Number.MAX_SAFE_INTEGER, bytesOut: Number.MAX_SAFE_INTEGER, durationMs: 2 ** 40 / 1000,
      upstreamMs: 2 ** 40 / 1000, listener: worst, route: worst, cluster: worst, endpoint: worst, attempts: 12,
      flags: ['URX', 'UF', 'DC', 'DI'],
    };
    const bound = jsonLineBound(e);
    const buf = Buffer.alloc(bound + 16, 0xff);
    const end = encodeJsonLine(e, buf, 16);
    expect(end).toBeLessThanOrEqual(bound + 16);
    expect(buf.toString('utf8', 16, end)).toBe(reference(e));
  });

  it('writes numbers outside the usual range as JSON.stringify does, null for what JSON cannot hold', () => {
    const base: AccessLogEntry = {
      time: 0, requestId: 'r', traceId: 't', spanId: null, clientIp: 'c', method: 'GET', path: '/', protocol: 'HTTP/1.1', status: 200, grpcStatus: null, bytesIn: 0, bytesOut: 0,
      durationMs: 0, upstreamMs: null, listener: 'l', route: null, cluster: null, endpoint: null, attempts: 1, flags: [],
    };
    for (const odd of [Number.NaN, Infinity, -1, 2 ** 60, 1.5, -0.25, 1e21]) {
      const e = { ...base, bytesIn: odd, bytesOut: odd, durationMs: odd, upstreamMs: odd };
      expect(encode(e)).toBe(reference(e));
    }
  });

  it('writes common lines without touching bytes before its start', () => {
    const e: AccessLogEntry = {
      time: Date.UTC(2026, 10, 26, 14, 3, 7, 5), requestId: 'r-1', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7',
      clientIp: '127.0.0.1', method: 'GET', path: '/small?x=1', protocol: 'HTTP/2', status: 200, grpcStatus: 0, bytesIn: 0, bytesOut: 20, durationMs: 0.034,
      upstreamMs: 12.5, listener: 'bench', route: 'small', cluster: 'alpha', endpoint: '127.0.0.1:8080', attempts: 1, flags: [],
    };
    const buf = Buffer.alloc(1024, 0x2a);
    const end = encodeJsonLine(e, buf, 3);
    expect(buf.toString('latin1', 0, 3)).toBe('***');
    expect(buf.toString('utf8', 3, end)).toBe(
      '{"time":"2026-11-26T14:03:07.005Z","requestId":"r-1","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","clientIp":"127.0.0.1",' +
        '"method":"GET","path":"/small?x=1","protocol":"HTTP/2","status":200,"grpcStatus":0,"bytesIn":0,"bytesOut":20,"durationMs":0.034,"upstreamMs":12.5,' +
        '"listener":"bench","route":"small","cluster":"alpha","endpoint":"127.0.0.1:8080","attempts":1,"flags":[]}\n',
    );
  });
});
