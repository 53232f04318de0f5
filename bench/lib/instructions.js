// Runs bench/instructions.sh (callgrind) for tandem and bare undici, or for
// two tandem configurations side by side, and reads its last line:
// instructions per request of every repetition.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median } from './report.js';

const script = fileURLToPath(new URL('../instructions.sh', import.meta.url));

export function valgrindAvailable() {
  return spawnSync('valgrind', ['--version']).status === 0 && spawnSync('callgrind_control', ['-h']).error === undefined;
}

/** `bench/instructions.sh ...args`, its output echoed; the JSON of its last line. */
async function counted(args, timeoutMs) {
  const child = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk) => {
    out += chunk;
    process.stdout.write(chunk);
  });
  const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
  const code = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? signal)));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`bench/instructions.sh exited ${code}`);
  const counts = JSON.parse(out.trim().split('\n').pop());
  if (Object.values(counts).some((c) => !c.length)) throw new Error('bench/instructions.sh counted nothing');
  return counts;
}

/** tandem's and bare undici's counts, their medians, tandem's median over bare's, and the range of the ratios repetition by repetition. */
export async function instructionsPerRequest({ timeoutMs = 10 * 60_000 } = {}) {
  const { tandem, bare } = await counted(['both'], timeoutMs);
  return {
    tandem,
    bare,
    tandemMedian: median(tandem),
    bareMedian: median(bare),
    ratio: median(tandem) / median(bare),
    // paired as the timed rounds are: the i-th repetitions of both saw the same position in the run
    ratioRange: pairRange(tandem, bare),
  };
}

/** Two tandems' counts, `a` with `configA` and `b` with `configB`, their repetitions taken in turn. */
export async function pairedInstructions(configA, configB, { timeoutMs = 10 * 60_000 } = {}) {
  return counted(['pair', configA, configB], timeoutMs);
}

export function pairRange(ours, theirs) {
  const ratios = ours.slice(0, theirs.length).map((v, i) => v / theirs[i]);
  return [Math.min(...ratios), Math.max(...ratios)];
}
