#!/usr/bin/env -S node --max-semi-space-size=4 --no-concurrent-recompilation --liftoff-only
// The command line (CONTRACT §1): run, validate, demo.
//
// The shebang's V8 flags lower peak RSS under load; each was measured on
// the small-GET bench load (bench/tandem.bench.yaml, 50 connections):
//  - --max-semi-space-size=4 caps the young generation at 4 MiB a
//    semi-space: about 30 MB less than V8's default (`npm run bench -- --heap`).
//  - --no-concurrent-recompilation runs Maglev and TurboFan on the main
//    thread, one function at a time, instead of in several worker threads
//    whose compiler zones and malloc arenas peak together: about 13 MiB less.
//    The code they produce is the same; the compile time moves into the
//    request path during warm-up only.
//  - --liftoff-only keeps undici's llhttp WebAssembly in its baseline code:
//    optimizing its 33 KB parser function takes about 23 MB of compiler
//    memory at once, which showed as about 13 MiB of peak RSS. Parsing a
//    small response takes 0.7 µs longer (1.36 against 0.69 µs), under 1% of
//    tandem's CPU per request.
// Together: peak RSS 132 -> 104 MiB, throughput unchanged within the noise.
// Running `node dist/cli.js` directly skips them; the npm scripts and the
// Dockerfile run the file itself.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatConfigError } from './config/errors.js';
import { DEFAULT_CONFIG_YAML } from './config/default.js';
import { loadConfigFileIsolated, loadConfigTextIsolated } from './config/load-isolated.js';
import { log } from './observability/log.js';
import type { Tandem } from './tandem.js';

const USAGE = `Usage:
  tandem [--config FILE]     run (FILE, else $TANDEM_CONFIG, else the embedded default)
  tandem validate FILE       check FILE: prints "ok", or every error as FILE:LINE:COL: key.path: message
  tandem demo                run the embedded default in front of the bundled demo application
  tandem --version | --help

Options:
  -c, --config FILE          configuration file (YAML)
`;

const EXIT_OK = 0;
const EXIT_INVALID = 1;
const EXIT_USAGE = 2;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`tandem: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT_OK;
  }
  if (values.version) {
    process.stdout.write(`tandem ${version()}\n`);
    return EXIT_OK;
  }
  const [command, ...rest] = positionals;
  switch (command) {
    case undefined:
      return run(values.config ?? process.env.TANDEM_CONFIG);
    case 'validate':
      if (rest.length !== 1 || values.config !== undefined) return usage('validate takes exactly one FILE');
      return validate(rest[0]!);
    case 'demo':
      if (rest.length > 0 || values.config !== undefined) return usage('demo takes no arguments');
      return demo();
    default:
      return usage(`unknown command "${command}"`);
  }
}

function usage(message: string): number {
  process.stderr.write(`tandem: ${message}\n\n${USAGE}`);
  return EXIT_USAGE;
}

async function validate(file: string): Promise<number> {
  // in this process: `validate` does nothing else, so nothing is held for long
  const { loadConfigFile } = await import('./config/load.js');
  const result = await loadConfigFile(file);
  if (result.ok) {
    process.stdout.write('ok\n');
    return EXIT_OK;
  }
  process.stdout.write(result.errors.map((e) => formatConfigError(e) + '\n').join(''));
  return EXIT_INVALID;
}

async function run(file: string | undefined): Promise<number> {
  const embedded = file === undefined || file === '';
  // The loader's child starts first: where there is a second CPU, it parses
  // the file while this process imports the proxy's modules.
  const loading = embedded ? loadConfigTextIsolated(DEFAULT_CONFIG_YAML, '<default>') : loadConfigFileIsolated(file);
  const { Tandem } = await import('./tandem.js');
  const loaded = await loading;
  if (!loaded.ok) {
    process.stderr.write(loaded.errors.map((e) => formatConfigError(e) + '\n').join(''));
    return EXIT_INVALID;
  }
  const tandem = new Tandem(loaded.config);
  try {
    await tandem.start(embedded ? {} : { configFile: file });
  } catch (err) {
    process.stderr.write(`tandem: ${(err as Error).message}\n`);
    return EXIT_INVALID;
  }
  return serve(tandem, embedded ? '<default>' : file);
}

async function demo(): Promise<number> {
  let started;
  try {
    // imported here: the demo's HTTP client is undici's full package, which the proxy does without (src/undici.ts)
    const { runDemo } = await import('./demo/demo.js');
    started = await runDemo();
  } catch (err) {
    process.stderr.write(`tandem: ${(err as Error).message}\n`);
    return EXIT_INVALID;
  }
  const code = await serve(started.tandem, 'demo');
  started.stopApps();
  return code;
}

/** Runs until a drain (signal or POST /quitquitquit) has finished. */
async function serve(tandem: Tandem, source: string): Promise<number> {
  const ports = tandem.boundListeners.map((l) => `${l.name}=${l.port}`).join(' ');
  log.info({ source, listeners: ports, admin: tandem.adminPort }, 'tandem ready');
  const onSignal = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'draining');
    void tandem.drain();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // The reload logs its own outcome.
  process.on('SIGHUP', () => void tandem.reload());
  await tandem.finished;
  return EXIT_OK;
}

// Exit explicitly: after a drain nothing is left to wait for, and a stray
// handle must not keep a stopped sidecar alive.
process.exit(await main(process.argv.slice(2)));
