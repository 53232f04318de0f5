// The child side of load-isolated.ts: YAML text on stdin, the file name as
// the only argument, loadConfigText's result v8-serialized on stdout.

import { text } from 'node:stream/consumers';
import { serialize } from 'node:v8';
import { loadConfigText } from './load.js';

try {
  process.stdout.write(serialize(loadConfigText(await text(process.stdin), process.argv[2] ?? '<stdin>')));
} catch (err) {
  // A bug, not a bad file (those are in the result): the parent reports this text.
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
}
