// docs/configuration.md, rendered from the JSON Schema so that the reference
// cannot drift from what tandem accepts: one row per key path with its type,
// default and description. Regenerate with `npm run docs:config`; a test
// fails when the committed file is stale.

import { configJsonSchema } from './json-schema.js';
import { DURATION_PATTERN, SIZE_PATTERN } from './units.js';

/** The subset of JSON Schema that z.toJSONSchema emits for tandem's configuration. */
export interface JsonSchema {
  title?: string;
  description?: string;
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  pattern?: string;
  minimum?: number;
  exclusiveMinimum?: number;
  maximum?: number;
  not?: unknown;
}

interface Row {
  path: string;
  type: string;
  default: string;
  description: string;
}

export function configReference(): string {
  return renderReference(configJsonSchema() as JsonSchema);
}

export function renderReference(schema: JsonSchema): string {
  const rows: Row[] = [];
  collectProperties(schema, '', rows);
  const lines = [
    `# ${schema.title ?? 'Configuration'} reference`,
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs:config`: do not edit by hand. -->',
    '',
    schema.description ?? '',
    '',
    'Key paths use `[]` for the items of a list (`listeners[].routes[].match.prefix`).',
    'A duration is a string with a unit (`250ms`, `2s`, `1m`, `1h`) or integer milliseconds;',
    'a size is a string (`512B`, `64KiB`, `1MiB`) or integer bytes. Unknown keys are errors.',
    '',
    '| key | type | default | meaning |',
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| \`${r.path}\` | ${cell(r.type)} | ${cell(r.default)} | ${cell(r.description)} |`),
    '',
  ];
  return lines.join('\n');
}

function collectProperties(node: JsonSchema, prefix: string, rows: Row[]): void {
  const required = new Set(node.required ?? []);
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    collect(child, prefix + key, required.has(key), rows);
  }
}

function collect(node: JsonSchema, path: string, required: boolean, rows: Row[]): void {
  rows.push({
    path,
    type: typeOf(node),
    default: defaultOf(node, required),
    description: node.description ?? '',
  });
  for (const object of objectShapes(node)) collectProperties(object, `${path}.`, rows);
  if (node.items) {
    for (const object of objectShapes(node.items)) collectProperties(object, `${path}[].`, rows);
  }
}

/** The object schemas whose keys continue a path: the node itself, or the object branches of a union. */
function objectShapes(node: JsonSchema): JsonSchema[] {
  if (node.properties) return [node];
  return (node.anyOf ?? []).filter((branch) => branch.properties);
}

function typeOf(node: JsonSchema): string {
  if (node.not !== undefined) return 'reserved';
  const unit = unitOf(node);
  if (unit) return unit;
  if (node.enum) return node.enum.map((v) => `\`${String(v)}\``).join(' | ');
  if (node.const !== undefined) return `\`${JSON.stringify(node.const)}\``;
  if (node.anyOf) return node.anyOf.map(typeOf).join(' or ');
  if (Array.isArray(node.type)) return node.type.join(' or ');
  switch (node.type) {
    case 'array':
      return `list of ${(node.items?.anyOf ?? [node.items ?? {}]).map((item) => plural(typeOf(item))).join(' or ')}`;
    case 'object':
      return typeof node.additionalProperties === 'object' ? `map of ${typeOf(node.additionalProperties)}` : 'object';
    case 'integer':
    case 'number':
      return `${node.type}${range(node)}`;
    default:
      return node.type ?? 'any';
  }
}

function unitOf(node: JsonSchema): 'duration' | 'size' | undefined {
  const patterns = (node.anyOf ?? []).map((branch) => branch.pattern);
  if (patterns.includes(DURATION_PATTERN)) return 'duration';
  if (patterns.includes(SIZE_PATTERN)) return 'size';
  return undefined;
}

// zod writes the safe-integer bounds for an unbounded int: not worth a reader's attention.
function range(node: JsonSchema): string {
  const bound = (n: number | undefined) => (n !== undefined && Math.abs(n) < Number.MAX_SAFE_INTEGER ? n : undefined);
  const min = bound(node.minimum);
  const above = bound(node.exclusiveMinimum);
  const max = bound(node.maximum);
  if (min !== undefined && max !== undefined) return ` ${min}–${max}`;
  const parts: string[] = [];
  if (min !== undefined) parts.push(`≥ ${min}`);
  if (above !== undefined) parts.push(`> ${above}`);
  if (max !== undefined) parts.push(`≤ ${max}`);
  return parts.length > 0 ? ` ${parts.join(', ')}` : '';
}

function plural(type: string): string {
  return type.replace(/^(string|object|integer|number|boolean)\b/, '$1s');
}

function defaultOf(node: JsonSchema, required: boolean): string {
  if (node.default === undefined) return required ? 'required' : '';
  const value = node.default;
  // An object default of {} only says "the block's own defaults apply": they have their rows.
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length === 0) return '';
  const unit = unitOf(node);
  if (unit === 'duration' && typeof value === 'number') return `\`${formatDuration(value)}\``;
  if (unit === 'size' && typeof value === 'number') return `\`${formatSize(value)}\``;
  // an empty string would read as no default at all
  return `\`${typeof value === 'string' && value !== '' ? value : JSON.stringify(value)}\``;
}

function formatDuration(ms: number): string {
  const units: [number, string][] = [
    [3_600_000, 'h'],
    [60_000, 'm'],
    [1000, 's'],
  ];
  for (const [size, suffix] of units) {
    if (ms > 0 && ms % size === 0) return `${ms / size}${suffix}`;
  }
  return ms === 0 ? '0s' : `${ms}ms`;
}

function formatSize(bytes: number): string {
  const units: [number, string][] = [
    [1024 ** 3, 'GiB'],
    [1024 ** 2, 'MiB'],
    [1024, 'KiB'],
  ];
  for (const [size, suffix] of units) {
    if (bytes > 0 && bytes % size === 0) return `${bytes / size}${suffix}`;
  }
  return bytes === 0 ? '0' : `${bytes}B`;
}

function cell(text: string): string {
  return text.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');
}
