// JSON Schema of what users write (durations and sizes with units, names
// optional), for editors: config/tandem.yaml points at the generated
// schema/tandem.schema.json. Regenerate that file with `npm run schema`.

import * as z from 'zod';
import { configInputSchema } from './schema.js';

export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(configInputSchema, {
    io: 'input',
    target: 'draft-2020-12',
    override: (ctx) => {
      // zod leaves out the default of a value parsed by a transform (our
      // durations and sizes); its parsed default (ms, bytes) is valid input.
      if (ctx.zodSchema instanceof z.ZodDefault && ctx.jsonSchema.default === undefined) {
        ctx.jsonSchema.default = ctx.zodSchema.def.defaultValue;
      }
    },
  });
}
