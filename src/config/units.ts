// Durations and sizes as users write them in YAML, turned into the integer
// milliseconds and bytes the rest of tandem reads.
//
// Grammar: a non-negative decimal number immediately followed by a unit
// (`250ms`, `2s`, `1.5s`, `64KiB`), or a plain integer (milliseconds, bytes).
// A fraction is accepted only when it lands on a whole millisecond or byte
// (`1.5s` = 1500ms, `0.5KiB` = 512B); `1.5ms` is refused because nothing
// downstream can honour it. Units are case-sensitive so that `mb` (millibit?)
// and `Mb` (megabit?) are errors rather than guesses.

export type UnitResult = { ok: true; value: number } | { ok: false; message: string };

const DURATION_UNITS: Record<string, bigint> = { ms: 1n, s: 1000n, m: 60_000n, h: 3_600_000n };
const SIZE_UNITS: Record<string, bigint> = {
  B: 1n,
  KB: 1000n,
  MB: 1000n ** 2n,
  GB: 1000n ** 3n,
  KiB: 1024n,
  MiB: 1024n ** 2n,
  GiB: 1024n ** 3n,
};

// Node timers overflow above 2^31-1 ms and silently fire after 1ms instead.
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** JSON Schema patterns for editors; the parser below is the authority. */
export const DURATION_PATTERN = '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$';
export const SIZE_PATTERN = '^[0-9]+(\\.[0-9]+)?(B|KB|MB|GB|KiB|MiB|GiB)$';

interface Quantity {
  kind: string;
  /** what a plain integer means */
  base: string;
  units: Record<string, bigint>;
  max: number;
  example: string;
}

const DURATION: Quantity = {
  kind: 'duration',
  base: 'milliseconds',
  units: DURATION_UNITS,
  max: MAX_DURATION_MS,
  example: '"250ms" or "2s"',
};

const SIZE: Quantity = {
  kind: 'size',
  base: 'bytes',
  units: SIZE_UNITS,
  max: Number.MAX_SAFE_INTEGER,
  example: '"512B" or "64KiB"',
};

export function parseDuration(input: unknown): UnitResult {
  return parseQuantity(input, DURATION);
}

export function parseSize(input: unknown): UnitResult {
  return parseQuantity(input, SIZE);
}

function parseQuantity(input: unknown, q: Quantity): UnitResult {
  if (typeof input === 'number') return fromNumber(input, q);
  if (typeof input !== 'string') {
    return fail(`expected a ${q.kind} such as ${q.example} or integer ${q.base}, got ${describeType(input)}`);
  }
  const text = input.trim();
  if (text.startsWith('-')) return fail(`${q.kind}s cannot be negative ("${input}")`);
  const unitList = Object.keys(q.units).join(', ');
  const m = /^([0-9]+)(?:\.([0-9]+))?([A-Za-z]*)$/.exec(text);
  if (!m) {
    return fail(`"${input}" is not a ${q.kind}: write a number and a unit (${unitList}), e.g. ${q.example}`);
  }
  const [, whole = '', fraction = '', unit = ''] = m;
  if (unit === '') {
    return fail(`"${input}" has no unit: add one (${unitList}) or write ${text} without quotes for ${q.base}`);
  }
  const multiplier = q.units[unit];
  if (multiplier === undefined) return fail(`unknown ${q.kind} unit "${unit}" in "${input}" (use ${unitList})`);
  const scale = 10n ** BigInt(fraction.length);
  const scaled = (BigInt(whole) * scale + BigInt(fraction || '0')) * multiplier;
  if (scaled % scale !== 0n) return fail(`"${input}" is not a whole number of ${q.base}`);
  return withinMax(scaled / scale, input, q);
}

function fromNumber(n: number, q: Quantity): UnitResult {
  if (n < 0) return fail(`${q.kind}s cannot be negative (${n})`);
  if (!Number.isInteger(n)) {
    return fail(`${n} is not a whole number of ${q.base} (write a string with a unit, e.g. ${q.example})`);
  }
  return withinMax(BigInt(n), String(n), q);
}

function withinMax(value: bigint, written: string, q: Quantity): UnitResult {
  if (value > BigInt(q.max)) return fail(`${q.kind} ${written} is too large (at most ${q.max} ${q.base})`);
  return { ok: true, value: Number(value) };
}

function fail(message: string): UnitResult {
  return { ok: false, message };
}

export function describeType(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return typeof value;
}
