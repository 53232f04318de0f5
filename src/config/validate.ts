// Parsed YAML (plain data) -> Config, or every issue found: zod's shape
// issues, reworded for people, plus the relations of rules.ts.

import * as z from 'zod';
import type { Config } from './types.js';
import type { ConfigIssue, ConfigPath } from './errors.js';
import { configSchema } from './schema.js';
import { checkRules } from './rules.js';
import { didYouMean } from './suggest.js';
import { describeType } from './units.js';

export type ValidationResult = { ok: true; config: Config } | { ok: false; issues: ConfigIssue[] };

export function validateConfig(input: unknown): ValidationResult {
  const issues = checkRules(input);
  const parsed = configSchema.safeParse(input);
  if (parsed.success && issues.length === 0) return { ok: true, config: parsed.data };
  if (!parsed.success) {
    for (const issue of parsed.error.issues) issues.push(...translate(issue, [], input));
  }
  return { ok: false, issues };
}

function translate(issue: z.core.$ZodIssue, base: ConfigPath, input: unknown): ConfigIssue[] {
  const path: ConfigPath = [...base, ...issue.path.map(segment)];
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeysAt(configSchema, path);
      return issue.keys.map((key) => ({
        path: [...path, key],
        at: 'key',
        message: `unknown key "${key}"${didYouMean(key, known)}`,
      }));
    }
    case 'invalid_union': {
      // Keep the branch the value was evidently meant for (it got past the
      // type check); if none or several did, the union's own message says it.
      const meant = issue.errors.filter((branch) => !branch.every((i) => i.code === 'invalid_type' && i.path.length === 0));
      const only = meant.length === 1 ? meant[0] : undefined;
      if (only) return only.flatMap((i) => translate(i, path, input));
      return [{ path, at: 'value', message: issue.message }];
    }
    case 'invalid_type': {
      const value = valueAt(input, path);
      if (value === undefined) return [{ path, at: 'value', message: `missing required key "${String(path.at(-1))}"` }];
      return [{ path, at: 'value', message: `expected ${typeName(issue.expected)}, got ${describeValue(value)}` }];
    }
    case 'invalid_value': {
      const value = valueAt(input, path);
      const choices = issue.values.map((v) => String(v));
      const hint = typeof value === 'string' ? didYouMean(value, choices) : '';
      return [{ path, at: 'value', message: `must be one of ${choices.join(' | ')}, got ${describeValue(value)}${hint}` }];
    }
    case 'too_small':
      return [{ path, at: 'value', message: boundMessage('at least', issue.origin, issue.minimum, issue.inclusive) }];
    case 'too_big':
      return [{ path, at: 'value', message: boundMessage('at most', issue.origin, issue.maximum, issue.inclusive) }];
    case 'invalid_key':
      return issue.issues.flatMap((i) => translate(i, path, input)).map((i) => ({ ...i, at: 'key' as const }));
    case 'custom':
      return [{ path, at: issue.params?.['at'] === 'key' ? 'key' : 'value', message: issue.message }];
    default:
      return [{ path, at: 'value', message: issue.message }];
  }
}

function segment(key: PropertyKey): string | number {
  return typeof key === 'number' ? key : String(key);
}

function boundMessage(relation: string, origin: string, bound: number | bigint, inclusive = true): string {
  const n = Number(bound);
  if (origin === 'array') return `needs ${relation} ${n} item${n === 1 ? '' : 's'}`;
  if (origin === 'string') return n === 1 && relation === 'at least' ? 'must not be empty' : `length must be ${relation} ${n}`;
  if (inclusive) return `must be ${relation} ${n}`;
  return `must be ${relation === 'at least' ? 'greater' : 'less'} than ${n}`;
}

function typeName(expected: string): string {
  const names: Record<string, string> = {
    int: 'an integer',
    number: 'a number',
    string: 'text',
    boolean: 'true or false',
    object: 'a mapping',
    array: 'a list',
  };
  return names[expected] ?? expected;
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return describeType(value);
}

function valueAt(input: unknown, path: ConfigPath): unknown {
  let value = input;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string | number, unknown>)[key];
  }
  return value;
}

/** The keys the schema allows at `path`, for "did you mean" hints. */
export function knownKeysAt(schema: z.ZodType, path: ConfigPath): string[] {
  const found = descend(schema, path);
  return found ? Object.keys(found.shape) : [];
}

function descend(schema: z.ZodType, path: ConfigPath): z.ZodObject | undefined {
  if (schema instanceof z.ZodPipe) return descend(schema.in as z.ZodType, path);
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault) {
    return descend(schema.unwrap() as z.ZodType, path);
  }
  if (schema instanceof z.ZodUnion) {
    for (const option of schema.options) {
      const found = descend(option as z.ZodType, path);
      if (found) return found;
    }
    return undefined;
  }
  const [head, ...rest] = path;
  if (head === undefined) return schema instanceof z.ZodObject ? schema : undefined;
  if (schema instanceof z.ZodArray && typeof head === 'number') return descend(schema.element as z.ZodType, rest);
  if (schema instanceof z.ZodObject) {
    const child = schema.shape[head];
    return child ? descend(child as z.ZodType, rest) : undefined;
  }
  return undefined;
}
