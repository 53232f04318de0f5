// CPU time and peak memory of a process and its descendants, from /proc.
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

function statFields(pid) {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** The pid and every descendant (nginx's worker, a clustered proxy's workers). */
export function processTree(rootPid) {
  const parentOf = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      parentOf.set(Number(entry), Number(statFields(entry)[1]));
    } catch {
      // the process ended while we listed /proc
    }
  }
  const tree = [rootPid];
  for (let i = 0; i < tree.length; i += 1) {
    for (const [pid, ppid] of parentOf) if (ppid === tree[i]) tree.push(pid);
  }
  return tree;
}

/** utime + stime of the whole tree, in microseconds. */
export function cpuMicros(rootPid) {
  let ticks = 0;
  for (const pid of processTree(rootPid)) {
    try {
      const fields = statFields(pid);
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
  }
  return (ticks / ticksPerSecond) * 1e6;
}

/** Sum of VmHWM (peak resident set) over the tree, in bytes. */
export function peakRssBytes(rootPid) {
  let kib = 0;
  for (const pid of processTree(rootPid)) {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) kib += Number(match[1]);
    } catch {
      // gone
    }
  }
  return kib * 1024;
}

/** The resident set of one process now (VmRSS), in bytes; null once it is gone. */
export function rssBytes(pid) {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return null;
  }
}

/** Time the hypervisor gave to others while `cpu` wanted to run (steal), and all of that CPU's time, in ticks since boot. */
export function cpuTicks(cpu) {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `));
  const fields = (line ?? '').trim().split(/\s+/).slice(1).map(Number);
  return { steal: fields[7] ?? 0, total: fields.reduce((a, b) => a + b, 0) };
}
