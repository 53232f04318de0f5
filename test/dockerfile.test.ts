// The Dockerfile cannot be built here (no container engine): these checks
// keep its facts in step with the repository instead.

import { readFile } from 'node:fs/promises';
import { describe, expect, test } from 'vitest';
import { loadConfigText } from '../src/config/load.js';

const read = (path: string) => readFile(new URL(`../${path}`, import.meta.url), 'utf8');

interface Instruction {
  op: string;
  args: string;
}

function instructions(text: string): Instruction[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [op = '', ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

/** The instructions of each stage, split at FROM. */
function stages(all: Instruction[]): Instruction[][] {
  const result: Instruction[][] = [];
  for (const i of all) {
    if (i.op === 'FROM') result.push([]);
    result.at(-1)?.push(i);
  }
  return result;
}

async function dockerfile() {
  const all = instructions(await read('Dockerfile'));
  const runtime = stages(all).at(-1)!;
  const one = (op: string) => {
    const found = runtime.filter((i) => i.op === op);
    expect(found, op).toHaveLength(1);
    return found[0]!.args;
  };
  return { all, runtime, one };
}

describe('Dockerfile', () => {
  test('every stage runs the Node.js major that package.json pins', async () => {
    const pkg = JSON.parse(await read('package.json')) as { devDependencies: Record<string, string> };
    const major = /\d+/.exec(pkg.devDependencies['node'] ?? '')?.[0];
    expect(major).toBeDefined();
    const { all } = await dockerfile();
    const images = all.filter((i) => i.op === 'FROM').map((i) => i.args.split(/\s+/)[0]);
    expect(images).toEqual([`node:${major}-bookworm-slim`, `node:${major}-bookworm-slim`]);
  });

  test('builds in one stage and installs only production dependencies in the image', async () => {
    const { all, runtime } = await dockerfile();
    const [build] = stages(all);
    expect(build!.filter((i) => i.op === 'RUN').map((i) => i.args)).toEqual(['npm ci', 'npm run build']);
    const runs = runtime.filter((i) => i.op === 'RUN').map((i) => i.args);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatch(/^npm ci --omit=dev\b/);
    expect(runtime.some((i) => i.op === 'COPY' && /^--from=build \S+\/dist \.\/dist$/.test(i.args))).toBe(true);
  });

  test('runs as a non-root user', async () => {
    const { one } = await dockerfile();
    const user = one('USER');
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(user).toBe('node');
  });

  test("the entrypoint runs dist/cli.js with the V8 flags of the CLI's shebang", async () => {
    const shebang = (await read('src/cli.ts')).split('\n')[0]!;
    const flags = shebang.split(/\s+/).slice(shebang.split(/\s+/).indexOf('node') + 1);
    expect(flags).toEqual(['--max-semi-space-size=4', '--no-concurrent-recompilation', '--liftoff-only']);
    const { one } = await dockerfile();
    expect(JSON.parse(one('ENTRYPOINT'))).toEqual(['node', ...flags, 'dist/cli.js']);
  });

  test('the default command reads the config file the image ships', async () => {
    const { runtime, one } = await dockerfile();
    const cmd = JSON.parse(one('CMD')) as string[];
    expect(cmd[0]).toBe('--config');
    const copied = runtime.find((i) => i.op === 'COPY' && i.args.startsWith('config/tandem.yaml '));
    expect(copied?.args.split(' ')[1]).toBe(cmd[1]);
  });

  test("exposes the ports of the shipped config's listeners and admin API", async () => {
    const result = loadConfigText(await read('config/tandem.yaml'), 'config/tandem.yaml');
    if (!result.ok) throw new Error(JSON.stringify(result.errors));
    const expected = [...result.config.listeners.map((l) => l.port), result.config.admin.port];
    const { one } = await dockerfile();
    expect(one('EXPOSE').split(/\s+/).map(Number)).toEqual(expected);
  });

  test('the build context leaves out local installs and build output', async () => {
    const ignored = (await read('.dockerignore')).split('\n').map((l) => l.trim());
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.git']));
    expect(ignored).not.toEqual(expect.arrayContaining(['src', 'config', 'package.json', 'package-lock.json', 'tsconfig.json']));
  });
});

describe('instructions', () => {
  test('joins continued lines and skips comments', () => {
    expect(instructions('# c\nFROM a AS b\nRUN x \\\n  y\n\nuser node')).toEqual([
      { op: 'FROM', args: 'a AS b' },
      { op: 'RUN', args: 'x y' },
      { op: 'USER', args: 'node' },
    ]);
  });
});
