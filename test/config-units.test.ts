import { describe, expect, test } from 'vitest';
import { MAX_DURATION_MS, parseDuration, parseSize } from '../src/config/units.js';
import { parseHostPort } from '../src/config/host-port.js';
import { closest, didYouMean, editDistance } from '../src/config/suggest.js';

const value = (r: ReturnType<typeof parseDuration>) => (r.ok ? r.value : r.message);

describe('parseDuration', () => {
  test.each([
    ['250ms', 250],
    ['2s', 2000],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['0s', 0],
    ['1.5s', 1500],
    ['0.25m', 15_000],
    [0, 0],
    [1500, 1500],
  ])('%j is %d ms', (input, ms) => {
    expect(parseDuration(input)).toEqual({ ok: true, value: ms });
  });

  test.each([
    ['-1s', 'durations cannot be negative ("-1s")'],
    [-5, 'durations cannot be negative (-5)'],
    ['1.5ms', '"1.5ms" is not a whole number of milliseconds'],
    [1.5, '1.5 is not a whole number of milliseconds (write a string with a unit, e.g. "250ms" or "2s")'],
    ['250', '"250" has no unit: add one (ms, s, m, h) or write 250 without quotes for milliseconds'],
    ['5d', 'unknown duration unit "d" in "5d" (use ms, s, m, h)'],
    ['2S', 'unknown duration unit "S" in "2S" (use ms, s, m, h)'],
    ['1m30s', '"1m30s" is not a duration: write a number and a unit (ms, s, m, h), e.g. "250ms" or "2s"'],
    ['soon', '"soon" is not a duration: write a number and a unit (ms, s, m, h), e.g. "250ms" or "2s"'],
    [true, 'expected a duration such as "250ms" or "2s" or integer milliseconds, got boolean'],
    [null, 'expected a duration such as "250ms" or "2s" or integer milliseconds, got nothing'],
    ['25d', 'unknown duration unit "d" in "25d" (use ms, s, m, h)'],
    ['600h', `duration 600h is too large (at most ${MAX_DURATION_MS} milliseconds)`],
  ])('%j is refused', (input, message) => {
    expect(value(parseDuration(input))).toBe(message);
  });

  test('the largest duration a Node timer can hold is accepted', () => {
    expect(parseDuration(MAX_DURATION_MS)).toEqual({ ok: true, value: 2_147_483_647 });
    expect(value(parseDuration(MAX_DURATION_MS + 1))).toBe(
      'duration 2147483648 is too large (at most 2147483647 milliseconds)',
    );
  });
});

describe('parseSize', () => {
  test.each([
    ['512B', 512],
    ['64KiB', 65_536],
    ['60KiB', 61_440],
    ['1MiB', 1_048_576],
    ['1GiB', 1_073_741_824],
    ['2KB', 2000],
    ['10MB', 10_000_000],
    ['1GB', 1_000_000_000],
    ['0.5KiB', 512],
    [0, 0],
    [4096, 4096],
  ])('%j is %d bytes', (input, bytes) => {
    expect(parseSize(input)).toEqual({ ok: true, value: bytes });
  });

  test.each([
    ['64kib', 'unknown size unit "kib" in "64kib" (use B, KB, MB, GB, KiB, MiB, GiB)'],
    ['1.5B', '"1.5B" is not a whole number of bytes'],
    ['-1KiB', 'sizes cannot be negative ("-1KiB")'],
    ['1024', '"1024" has no unit: add one (B, KB, MB, GB, KiB, MiB, GiB) or write 1024 without quotes for bytes'],
    [2.5, '2.5 is not a whole number of bytes (write a string with a unit, e.g. "512B" or "64KiB")'],
    [[1], 'expected a size such as "512B" or "64KiB" or integer bytes, got a list'],
  ])('%j is refused', (input, message) => {
    expect(value(parseSize(input))).toBe(message);
  });
});

describe('parseHostPort', () => {
  test.each([
    ['127.0.0.1:8080', '127.0.0.1', 8080],
    ['app.default.svc:80', 'app.default.svc', 80],
    ['[::1]:8080', '::1', 8080],
    ['[fd00::13]:65535', 'fd00::13', 65535],
  ])('%s', (text, address, port) => {
    expect(parseHostPort(text)).toEqual({ ok: true, address, port });
  });

  test.each([
    ['127.0.0.1', 'missing port in "127.0.0.1": write HOST:PORT, e.g. "127.0.0.1:8080"'],
    ['127.0.0.1:', 'missing port in "127.0.0.1:": write HOST:PORT, e.g. "127.0.0.1:8080"'],
    ['[::1]', 'missing port in "[::1]": write HOST:PORT, e.g. "127.0.0.1:8080"'],
    ['::1:8080', '"::1:8080": write IPv6 addresses in brackets, e.g. "[::1]:8080"'],
    ['host:0', 'port 0 in "host:0" is out of range (1-65535)'],
    ['host:70000', 'port 70000 in "host:70000" is out of range (1-65535)'],
    ['host:http', '"host:http" is not HOST:PORT (e.g. "127.0.0.1:8080" or "[::1]:8080")'],
  ])('%s is refused', (text, message) => {
    expect(parseHostPort(text)).toEqual({ ok: false, message });
  });
});

describe('suggestions', () => {
  test('edit distance counts insertions, deletions and substitutions', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('same', 'same')).toBe(0);
    expect(editDistance('attemps', 'attempts')).toBe(1);
  });

  test('closest picks the nearest plausible typo and nothing when far', () => {
    expect(closest('clustr', ['cluster', 'clusters', 'match'])).toBe('cluster');
    expect(closest('maxheaderbytes', ['maxHeaderBytes', 'maxHeaders'])).toBe('maxHeaderBytes');
    expect(closest('banana', ['cluster', 'match'])).toBeUndefined();
    expect(didYouMean('tiemout', ['timeout'])).toBe(' (did you mean "timeout"?)');
    expect(didYouMean('xyz', ['timeout'])).toBe('');
  });
});
