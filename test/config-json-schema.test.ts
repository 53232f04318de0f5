import { readFile } from 'node:fs/promises';
import { describe, expect, test } from 'vitest';
import { configJsonSchema } from '../src/config/json-schema.js';

const committed = () => readFile(new URL('../schema/tandem.schema.json', import.meta.url), 'utf8');

describe('schema/tandem.schema.json', () => {
  test('is up to date with the zod schema', async () => {
    const fresh = JSON.stringify(configJsonSchema(), null, 2) + '\n';
    const stale = (await committed()) !== fresh;
    expect(stale, 'schema/tandem.schema.json is stale: run `npm run schema` and commit the result').toBe(false);
  });

  test('describes the input users write: units as text or integers, no unknown keys', () => {
    const schema = configJsonSchema() as {
      title: string;
      required: string[];
      additionalProperties: boolean;
      properties: Record<string, { properties: Record<string, { anyOf?: unknown[]; default?: unknown }> }>;
    };
    expect(schema.title).toBe('tandem configuration');
    expect(schema.required).toEqual(['listeners']);
    expect(schema.additionalProperties).toBe(false);
    const timeout = schema.properties['drain']!.properties['timeout']!;
    expect(timeout.default).toBe(30_000);
    expect(timeout.anyOf).toEqual([
      { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$' },
      { type: 'integer', minimum: 0 },
    ]);
  });
});
