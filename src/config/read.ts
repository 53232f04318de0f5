// Reading a configuration file, apart from parsing it: the running proxy
// reads (on reload) without loading the parser (load-isolated.ts).

import { readFile } from 'node:fs/promises';
import { fileError } from './errors.js';
import type { LoadResult } from './load.js';

/** The file's text, or the failed LoadResult that says why it cannot be read. */
export async function readConfigFile(file: string): Promise<string | Extract<LoadResult, { ok: false }>> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    return { ok: false, errors: [fileError(file, `cannot read file: ${(err as Error).message}`)] };
  }
}
