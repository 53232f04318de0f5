import { readFile } from 'node:fs/promises';
import { describe, expect, test } from 'vitest';
import { configReference, renderReference, type JsonSchema } from '../src/config/reference.js';

const committed = () => readFile(new URL('../docs/configuration.md', import.meta.url), 'utf8');

function rowOf(markdown: string, path: string): string[] {
  const line = markdown.split('\n').find((l) => l.startsWith(`| \`${path}\` |`));
  if (!line) throw new Error(`no row for ${path}`);
  return line
    .slice(1, -1)
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());
}

describe('docs/configuration.md', () => {
  test('is up to date with the zod schema', async () => {
    const stale = (await committed()) !== configReference();
    expect(stale, 'docs/configuration.md is stale: run `npm run docs:config` and commit the result').toBe(false);
  });

  test('has a row with type, default and meaning for every key, nested ones included', () => {
    const doc = configReference();
    expect(rowOf(doc, 'drain.timeout')).toEqual(['`drain.timeout`', 'duration', '`30s`', expect.stringMatching(/in-flight/)]);
    expect(rowOf(doc, 'listeners[].limits.maxHeaderBytes').slice(1, 3)).toEqual(['size', '`60KiB`']);
    expect(rowOf(doc, 'listeners[].port').slice(1, 3)).toEqual(['integer 0–65535', 'required']);
    expect(rowOf(doc, 'accessLog.format').slice(1, 3)).toEqual(['`json` \\| `text` \\| `off`', '`json`']);
    expect(rowOf(doc, 'listeners[].routes[].match.headers[].name')[2]).toBe('required');
    expect(rowOf(doc, 'clusters[].endpoints[].weight').slice(1, 3)).toEqual(['integer ≥ 1', '`1`']);
    expect(rowOf(doc, 'clusters[].circuitBreaker.errorThresholdPercentage')[1]).toBe('number > 0, ≤ 100');
  });

  test('every key of the schema carries a description', () => {
    const undocumented = configReference()
      .split('\n')
      .filter((l) => l.startsWith('| `'))
      .filter((l) => rowOf(l, l.slice(3, l.indexOf('`', 3)))[3] === '');
    expect(undocumented).toEqual([]);
  });
});

describe('renderReference', () => {
  const schema: JsonSchema = {
    title: 'demo',
    type: 'object',
    required: ['items'],
    properties: {
      wait: { description: 'a wait', default: 90_000, anyOf: [{ type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$' }, { type: 'integer' }] },
      items: {
        description: 'things | stuff',
        type: 'array',
        items: { anyOf: [{ type: 'string' }, { type: 'object', properties: { port: { type: 'integer', minimum: 1 } }, required: ['port'] }] },
      },
      later: { description: 'reserved', not: {} },
    },
  };

  test('renders units, unions, nested list items and escapes table pipes', () => {
    const doc = renderReference(schema);
    expect(doc.startsWith('# demo reference\n')).toBe(true);
    expect(rowOf(doc, 'wait')).toEqual(['`wait`', 'duration', '`90s`', 'a wait']);
    expect(rowOf(doc, 'items')).toEqual(['`items`', 'list of strings or objects', 'required', 'things \\| stuff']);
    expect(rowOf(doc, 'items[].port')).toEqual(['`items[].port`', 'integer ≥ 1', 'required', '']);
    expect(rowOf(doc, 'later')[1]).toBe('reserved');
  });
});
