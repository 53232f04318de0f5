// Child processes of the harness: spawned pinned to a CPU, tracked so every
// one of them is killed on the way out (normal end, error or signal).
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

const children = new Set();
const hasTaskset = spawnSync('taskset', ['-V']).status === 0;
// On a machine shared with other work (builds, test runs), that work must
// not land on the pinned CPUs in the middle of a run. With autogrouping on,
// the scheduler shares CPU between sessions before it looks at a process's
// nice value, so the priority is raised for this whole session (the harness
// and every child it starts). Only root may do that; elsewhere it is a no-op.
try {
  if (process.getuid?.() === 0) writeFileSync('/proc/self/autogroup', '-10');
} catch {
  // no autogroup support: the run goes on at normal priority
}

export function tasksetAvailable() {
  return hasTaskset;
}

/** Starts `command args` on `cpu` (when taskset exists); stdout/stderr are kept for diagnostics. */
export function startPinned(cpu, command, args, options = {}) {
  const pinned = hasTaskset && cpu !== undefined ? ['taskset', '-c', String(cpu), command, ...args] : [command, ...args];
  const [file, ...argv] = pinned;
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const tracked = { child, stdout: '', stderr: '', exited: false, exitCode: null };
  child.stdout.on('data', (chunk) => { tracked.stdout = keepTail(tracked.stdout + chunk); });
  child.stderr.on('data', (chunk) => { tracked.stderr = keepTail(tracked.stderr + chunk); });
  tracked.exit = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      tracked.exited = true;
      tracked.exitCode = code ?? signal;
      children.delete(tracked);
      resolve(tracked.exitCode);
    });
    child.on('error', (err) => {
      tracked.exited = true;
      tracked.stderr += String(err);
      children.delete(tracked);
      resolve(-1);
    });
  });
  children.add(tracked);
  return tracked;
}

function keepTail(text) {
  return text.length > 64 * 1024 ? text.slice(-64 * 1024) : text;
}

/** The JSON a child prints on its first line (a port it bound), once it has. */
export async function firstJsonLine(tracked, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!tracked.stdout.includes('\n')) {
    if (tracked.exited || Date.now() > deadline) throw new Error(`${what} did not start: ${tracked.stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return JSON.parse(tracked.stdout.slice(0, tracked.stdout.indexOf('\n')));
}

/** Runs a pinned child to completion and returns its stdout. */
export async function runPinned(cpu, command, args, timeoutMs) {
  const tracked = startPinned(cpu, command, args);
  const timer = setTimeout(() => tracked.child.kill('SIGKILL'), timeoutMs);
  const code = await tracked.exit;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${code}: ${tracked.stderr.slice(-2000)}`);
  return tracked.stdout;
}

/** SIGTERM, then SIGKILL after `graceMs` if the process is still there. */
export async function stop(tracked, graceMs = 3000) {
  if (tracked.exited) return;
  tracked.child.kill('SIGTERM');
  const timer = setTimeout(() => tracked.child.kill('SIGKILL'), graceMs);
  await tracked.exit;
  clearTimeout(timer);
}

export async function stopAll() {
  await Promise.all([...children].map((tracked) => stop(tracked)));
}

function killAllNow() {
  for (const tracked of children) tracked.child.kill('SIGKILL');
}

// A harness that dies must not leave proxies and upstreams listening.
process.on('exit', killAllNow);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killAllNow();
    process.exit(130);
  });
}
