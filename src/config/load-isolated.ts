// Loads a configuration in a short-lived child process, so that the running
// proxy never holds yaml, zod and the schema: once imported, a module stays
// for the life of the process, and those three took about 10 MiB of tandem's
// RSS at rest for work done once at start and on each reload. The child is
// the same Node binary on load-child.js bundled into one file at build time
// (`npm run build`): resolving, reading and compiling the two hundred files
// of yaml and zod one by one took a large share of the child's CPU, and the
// child is on tandem's start-up path. It gets the text on stdin and answers the
// LoadResult, v8-serialized, on stdout. A worker thread instead of the child
// was measured and rejected: its isolate's memory is not given back to the
// system after it ends, so it would cost the RSS the child exists to save.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { deserialize } from 'node:v8';
import { fileError } from './errors.js';
import type { LoadResult } from './load.js';
import { readConfigFile } from './read.js';

// From dist/config/ and from src/config/ (the tests) alike: the child is always the built bundle.
const LOADER = fileURLToPath(new URL('../../dist/config/load-child.bundle.js', import.meta.url));

/** A loader still running after this long is stuck: a real configuration loads in milliseconds. */
const LOADER_TIMEOUT_MS = 30_000;

export async function loadConfigFileIsolated(file: string): Promise<LoadResult> {
  const text = await readConfigFile(file);
  return typeof text === 'string' ? loadConfigTextIsolated(text, file) : text;
}

/** loadConfigText's result for `text`, computed in a child process. `loader` and `timeoutMs` are for tests. */
export function loadConfigTextIsolated(text: string, file: string, loader = LOADER, timeoutMs = LOADER_TIMEOUT_MS): Promise<LoadResult> {
  return new Promise((resolve) => {
    const failed = (why: string): void => resolve({ ok: false, errors: [fileError(file, `the configuration loader failed: ${why}`)] });
    // NODE_OPTIONS is left out: an --inspect or --require meant for tandem must not run twice.
    const { NODE_OPTIONS: _, ...env } = process.env;
    const child = spawn(process.execPath, [loader, file], { stdio: ['pipe', 'pipe', 'pipe'], env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    // A child that dies early closes its stdin: its exit says why.
    child.stdin.on('error', () => {});
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      failed(e.message);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) return failed(`no answer within ${timeoutMs / 1000} s`);
      if (code !== 0) {
        // its stderr, a stack trace when it met a bug, is the only clue
        const said = Buffer.concat(err).toString('utf8').trim().slice(0, 2000);
        return failed(`${code === null ? `killed by ${signal}` : `exit code ${code}`}${said ? `: ${said}` : ''}`);
      }
      try {
        resolve(deserialize(Buffer.concat(out)) as LoadResult);
      } catch (e) {
        failed(`unreadable answer (${(e as Error).message})`);
      }
    });
    child.stdin.end(text);
  });
}
