import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import { formatConfigError } from '../src/config/errors.js';
import type { RouteConfig } from '../src/config/types.js';
import { ERRORS, type ErrorCode } from '../src/proxy/errors.js';
import {
  encodeGrpcMessage,
  formatGrpcTimeout,
  grpcErrorHeaders,
  grpcRequestTimeout,
  grpcStatusCounted,
  grpcStatusFromHttp,
  grpcStatusName,
  grpcStatusOfError,
  isGrpc,
  isGrpcFailure,
  parseGrpcStatus,
  parseGrpcTimeout,
} from '../src/proxy/grpc.js';
import { breakerVerdict } from '../src/cluster/admission.js';
import { BodyCopy } from '../src/proxy/body-copy.js';
import { headerSlot } from '../src/proxy/headers.js';
import { allowsRetry, compileRetryPolicy, mayResendBody } from '../src/proxy/retry-policy.js';

describe('isGrpc', () => {
  it('is true for every content type starting with application/grpc', () => {
    for (const ct of ['application/grpc', 'application/grpc+proto', 'application/grpc+json', 'application/grpc-web', 'application/grpc; charset=utf-8']) {
      expect(isGrpc(ct)).toBe(true);
    }
  });

  it('is false for other content types and for none', () => {
    for (const ct of [undefined, '', 'application/json', 'Application/GRPC', 'text/application/grpc', 'application/gr']) {
      expect(isGrpc(ct)).toBe(false);
    }
  });
});

describe('gRPC status names', () => {
  it('names the 17 codes of the gRPC spec', () => {
    const names = Array.from({ length: 17 }, (_, i) => grpcStatusName(i));
    expect(names).toEqual([
      'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
      'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE',
      'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
    ]);
  });

  it('names any other number UNKNOWN, as gRPC clients read it', () => {
    for (const code of [17, 99, 123456789, -1, 1.5, Number.NaN]) expect(grpcStatusName(code)).toBe('UNKNOWN');
  });

  it('reads grpc-status values: digits only, the first of repeated ones', () => {
    expect(parseGrpcStatus('0')).toBe(0);
    expect(parseGrpcStatus('14')).toBe(14);
    expect(parseGrpcStatus('99')).toBe(99);
    expect(parseGrpcStatus(['4', '14'])).toBe(4);
    for (const bad of [undefined, '', ' 14', '14 ', '-1', '1.0', 'OK', '0x0e', '1234567890', []]) expect(parseGrpcStatus(bad)).toBeNull();
  });
});

describe("tandem's errors to gRPC requests", () => {
  it('map to the grpc-status of CONTRACT §10', () => {
    const expected: Record<ErrorCode, number> = {
      no_route: 12,
      upstream_timeout: 4,
      rate_limited: 8,
      payload_too_large: 8,
      unauthorized: 16,
      bad_request: 13,
      method_not_allowed: 14,
      expectation_failed: 14,
      request_timeout: 14,
      headers_too_large: 14,
      upstream_connect_failure: 14,
      upstream_reset: 14,
      no_healthy_upstream: 14,
      circuit_open: 14,
      overflow: 14,
    };
    // every error code is in the table above
    expect(Object.keys(expected).sort()).toEqual(Object.keys(ERRORS).sort());
    for (const code of Object.keys(expected) as ErrorCode[]) expect([code, grpcStatusOfError(code)]).toEqual([code, expected[code]]);
  });

  it('are trailers-only headers: gRPC content type, status, message, error code and request id', () => {
    expect(grpcErrorHeaders('no_healthy_upstream', ERRORS.no_healthy_upstream.message, 'rid-1')).toEqual([
      'content-type', 'application/grpc',
      'grpc-status', '14',
      'grpc-message', 'no healthy upstream endpoint',
      'x-tandem-error', 'no_healthy_upstream',
      'x-request-id', 'rid-1',
    ]);
    expect(grpcErrorHeaders('no_route', '100% not found', 'r').slice(2, 6)).toEqual(['grpc-status', '12', 'grpc-message', '100%25 not found']);
  });

  it('percent-encode grpc-message as the gRPC wire format asks', () => {
    expect(encodeGrpcMessage('plain text: ok (1/2) ~!')).toBe('plain text: ok (1/2) ~!');
    expect(encodeGrpcMessage('100% done')).toBe('100%25 done');
    expect(encodeGrpcMessage('line\nbreak\ttab')).toBe('line%0Abreak%09tab');
    expect(encodeGrpcMessage('café €')).toBe('caf%C3%A9 %E2%82%AC');
    // and decoding gives the text back
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        const encoded = encodeGrpcMessage(s);
        expect(encoded).toMatch(/^[\x20-\x7e]*$/);
        expect(decodeURIComponent(encoded)).toBe(s);
      }),
      { numRuns: 500, seed: 10 },
    );
  });
});

describe('answers without grpc-status', () => {
  it('count as gRPC clients read them (the HTTP to gRPC status mapping)', () => {
    expect(grpcStatusFromHttp(400)).toBe(13);
    expect(grpcStatusFromHttp(401)).toBe(16);
    expect(grpcStatusFromHttp(403)).toBe(7);
    expect(grpcStatusFromHttp(404)).toBe(12);
    for (const status of [429, 502, 503, 504]) expect(grpcStatusFromHttp(status)).toBe(14);
    for (const status of [200, 201, 302, 405, 500, 501]) expect(grpcStatusFromHttp(status)).toBe(2);
  });

  it('count under the grpc-status sent, else CANCELLED for a client that left, else by the HTTP status', () => {
    expect(grpcStatusCounted(5, 200, false)).toBe(5);
    expect(grpcStatusCounted(0, 200, true)).toBe(0);
    expect(grpcStatusCounted(null, 499, true)).toBe(1);
    expect(grpcStatusCounted(null, 200, true)).toBe(1);
    expect(grpcStatusCounted(null, 503, false)).toBe(14);
    expect(grpcStatusCounted(null, 200, false)).toBe(2);
  });
});

describe('failure classification for the breaker and outlier detection', () => {
  it('UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE and DATA_LOSS fail, like a 5xx', () => {
    const failing = Array.from({ length: 20 }, (_, i) => i).filter(isGrpcFailure);
    expect(failing).toEqual([2, 4, 13, 14, 15]);
  });
});

describe('the breaker verdict of a gRPC answer', () => {
  it('a failure status fails the request whatever the HTTP status; others succeed; no healthy upstream says nothing', () => {
    for (const code of [2, 4, 13, 14, 15]) expect(breakerVerdict(200, null, code)).toBe(false);
    for (const code of [0, 1, 3, 5, 7, 8, 12, 16]) expect(breakerVerdict(200, null, code)).toBe(true);
    expect(breakerVerdict(200, ['UH'], 14)).toBeNull();
    expect(breakerVerdict(499, ['DC'], null)).toBeNull();
    // a 5xx stays a failure, a cut answer too, with or without a status
    expect(breakerVerdict(503, null, 0)).toBe(false);
    expect(breakerVerdict(200, ['UR'], null)).toBe(false);
    expect(breakerVerdict(200, null, null)).toBe(true);
  });
});

describe('grpc-timeout', () => {
  it('reads every unit of the wire format, in ms', () => {
    expect(parseGrpcTimeout('1H')).toBe(3_600_000);
    expect(parseGrpcTimeout('2M')).toBe(120_000);
    expect(parseGrpcTimeout('3S')).toBe(3000);
    expect(parseGrpcTimeout('250m')).toBe(250);
    expect(parseGrpcTimeout('1500u')).toBe(1.5);
    expect(parseGrpcTimeout('2000000n')).toBe(2);
    expect(parseGrpcTimeout('99999999S')).toBe(99_999_999_000);
    expect(parseGrpcTimeout('0S')).toBe(0);
    expect(parseGrpcTimeout('00000005m')).toBe(5);
  });

  it('ignores anything else: more than 8 digits, no or an unknown unit, signs, spaces, repeats', () => {
    for (const bad of [undefined, '', '100', 'S', '123456789S', '1s', '1h', '1ms', '-1S', '+1S', ' 1S', '1S ', '1 S', '1.5S', '1e3m', ['1S', '2S'], '1S, 2S']) {
      expect(parseGrpcTimeout(bad)).toBeNull();
    }
  });

  it('writes the time left in the finest unit within 8 digits, rounded up', () => {
    expect(formatGrpcTimeout(0.1)).toBe('100000n');
    expect(formatGrpcTimeout(1.5)).toBe('1500000n');
    expect(formatGrpcTimeout(99.999999)).toBe('99999999n');
    expect(formatGrpcTimeout(100)).toBe('100000u');
    expect(formatGrpcTimeout(250.0004)).toBe('250001u');
    expect(formatGrpcTimeout(30_000)).toBe('30000000u');
    expect(formatGrpcTimeout(100_000)).toBe('100000m');
    expect(formatGrpcTimeout(100_000_000)).toBe('100000S');
    expect(formatGrpcTimeout(3_600_000 * 30_000)).toBe('1800000M');
    expect(formatGrpcTimeout(3_600_000 * 99_999_999 * 60)).toBe('99999999H');
  });

  it('writes a deadline already passed as zero', () => {
    expect(formatGrpcTimeout(0)).toBe('0n');
    expect(formatGrpcTimeout(-5)).toBe('0n');
  });

  it('written, reads back as no earlier than the time left, within one unit', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.000_001, max: 1e12, noNaN: true }), (ms) => {
        const text = formatGrpcTimeout(ms);
        expect(text).toMatch(/^\d{1,8}[HMSmun]$/);
        const back = parseGrpcTimeout(text)!;
        const unit = parseGrpcTimeout(`1${text.at(-1)}`)!;
        expect(back).toBeGreaterThanOrEqual(ms - 1e-6);
        expect(back - ms).toBeLessThan(unit + 1e-6);
      }),
      { numRuns: 2000, seed: 7 },
    );
  });

  it("replaces the route timeout, capped by maxGrpcTimeout (0: no cap)", () => {
    expect(grpcRequestTimeout(null, 30_000, 15_000)).toBe(15_000);
    expect(grpcRequestTimeout(null, 0, 0)).toBe(0);
    expect(grpcRequestTimeout(2000, 30_000, 15_000)).toBe(2000);
    expect(grpcRequestTimeout(20_000, 30_000, 15_000)).toBe(20_000);
    expect(grpcRequestTimeout(60_000, 30_000, 15_000)).toBe(30_000);
    expect(grpcRequestTimeout(3_600_000, 0, 15_000)).toBe(3_600_000);
  });

  it('a deadline of (almost) nothing keeps a timer: it never means "no timeout"', () => {
    expect(grpcRequestTimeout(0, 30_000, 15_000)).toBe(1);
    expect(grpcRequestTimeout(0.002, 0, 0)).toBe(1);
  });
});

const yaml = (...lines: string[]) => lines.join('\n') + '\n';

function route(...lines: string[]): RouteConfig {
  const result = loadConfigText(
    yaml('listeners:', '  - port: 15000', '    routes:', '      - match: { prefix: / }', '        cluster: app', ...lines, 'clusters:', '  - name: app', '    endpoints: [127.0.0.1:8080]'),
    'f.yaml',
  );
  if (!result.ok) throw new Error(result.errors.map(formatConfigError).join('\n'));
  return result.config.listeners[0]!.routes[0]!;
}

function routeErrors(...lines: string[]): string[] {
  const result = loadConfigText(
    yaml('listeners:', '  - port: 15000', '    routes:', '      - match: { prefix: / }', '        cluster: app', ...lines, 'clusters:', '  - name: app', '    endpoints: [127.0.0.1:8080]'),
    'f.yaml',
  );
  return result.ok ? [] : result.errors.map(formatConfigError);
}

describe('route maxGrpcTimeout', () => {
  it('defaults to the route timeout', () => {
    expect(route().maxGrpcTimeout).toBe(15_000);
    expect(route('        timeout: 2s').maxGrpcTimeout).toBe(2000);
    expect(route('        timeout: 0').maxGrpcTimeout).toBe(0);
  });

  it('is a duration of its own, 0 for no cap', () => {
    expect(route('        maxGrpcTimeout: 30s').maxGrpcTimeout).toBe(30_000);
    expect(route('        timeout: 1s', '        maxGrpcTimeout: 0').maxGrpcTimeout).toBe(0);
  });

  it('refuses what is not a duration, at the value', () => {
    expect(routeErrors('        maxGrpcTimeout: soon')).toEqual([expect.stringMatching(/^f\.yaml:6:25: listeners\.0\.routes\.0\.maxGrpcTimeout: /)]);
  });
});

describe('gRPC retryOn conditions', () => {
  it('compile to the grpc-status values they retry', () => {
    const r = route('        retries:', '          retryOn: [unavailable, deadline-exceeded, resource-exhausted, cancelled, internal]');
    expect(r.retries.retryOn).toEqual(['unavailable', 'deadline-exceeded', 'resource-exhausted', 'cancelled', 'internal']);
    const p = compileRetryPolicy(r.retries);
    expect([...p.grpcStatuses].sort((a, b) => a - b)).toEqual([1, 4, 8, 13, 14]);
    // no HTTP condition named: no HTTP status is looked at
    expect(p.onStatus).toBe(false);
    expect(p.connectFailure).toBe(false);
  });

  it('mix with the HTTP conditions, each keeping its meaning', () => {
    const p = compileRetryPolicy(route('        retries: { retryOn: [connect-failure, 5xx, unavailable] }').retries);
    expect([...p.grpcStatuses]).toEqual([14]);
    expect(p.connectFailure).toBe(true);
    expect(p.any5xx).toBe(true);
    expect(p.onStatus).toBe(true);
  });

  it('allow a retry for any method, only for the statuses named', () => {
    const p = compileRetryPolicy(route('        retries: { retryOn: [unavailable, cancelled] }').retries);
    expect(allowsRetry(p, 'grpc-status', 14, false)).toBe(true);
    expect(allowsRetry(p, 'grpc-status', 1, false)).toBe(true);
    expect(allowsRetry(p, 'grpc-status', 4, true)).toBe(false);
    expect(allowsRetry(p, 'grpc-status', 0, true)).toBe(false);
    // HTTP conditions keep the idempotent rule
    expect(allowsRetry(p, 'reset', 502, false)).toBe(false);
  });

  it("make a gRPC request's body worth keeping, not a plain POST's", () => {
    const p = compileRetryPolicy(route('        retries: { retryOn: [unavailable] }').retries);
    expect(mayResendBody(p, false, true)).toBe(true);
    expect(mayResendBody(p, false, false)).toBe(false);
    expect(mayResendBody(compileRetryPolicy(route('        retries: { retryOn: [reset] }').retries), false, true)).toBe(false);
    expect(mayResendBody(compileRetryPolicy(route('        retries: { retryOn: [unavailable], bufferLimit: 0 }').retries), false, true)).toBe(false);
  });

  it('are none by default, with or without a retries block', () => {
    expect(compileRetryPolicy(route().retries).grpcStatuses.size).toBe(0);
    expect(compileRetryPolicy(route('        retries: {}').retries).grpcStatuses.size).toBe(0);
  });

  it('an unknown condition is refused with the list of known ones', () => {
    expect(routeErrors('        retries: { retryOn: [unavailable, aborted] }')).toEqual([
      'f.yaml:6:43: listeners.0.routes.0.retries.retryOn.1: must be one of connect-failure | reset | 5xx | gateway-error | retriable-status-codes | cancelled | deadline-exceeded | resource-exhausted | internal | unavailable, got "aborted"',
    ]);
  });
});

describe('the copy of a streamed body', () => {
  it('is the whole body when it stayed within the limit', () => {
    const copy = new BodyCopy(10);
    copy.keep(Buffer.from('abc'));
    copy.keep(Buffer.from(''));
    copy.keep(Buffer.from('defghij'));
    expect(copy.whole()!.toString()).toBe('abcdefghij');
    expect(new BodyCopy(10).whole()!.length).toBe(0);
  });

  it('is nothing once the body outgrew the limit, however it goes on', () => {
    const copy = new BodyCopy(4);
    copy.keep(Buffer.from('abc'));
    copy.keep(Buffer.from('de'));
    copy.keep(Buffer.from('f'));
    expect(copy.whole()).toBeNull();
  });
});

describe('headerSlot', () => {
  it('finds the value of a header in any case that still holds the value given', () => {
    const headers = ['host', 'h', 'Grpc-Timeout', '5S', 'traceparent', 'tp', 'grpc-timeout', '1S'];
    expect(headerSlot(headers, 'grpc-timeout', '5S')).toBe(3);
    expect(headerSlot(headers, 'grpc-timeout', '1S')).toBe(7);
    expect(headerSlot(headers, 'traceparent', 'tp')).toBe(5);
    expect(headerSlot(headers, 'grpc-timeout', '2S')).toBe(-1);
    expect(headerSlot(headers, 'x-other', 'h')).toBe(-1);
  });
});
