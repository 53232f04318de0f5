// How many workers `workers: auto` means: the container's CPU quota rounded
// up (a Pod limit of 1500m gets 2), else the CPUs this process may run on.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** cgroup v2's limit file, then v1's pair; absent or unlimited: null. */
export function cpuQuota(root = '/sys/fs/cgroup'): number | null {
  const v2 = readOr(`${root}/cpu.max`);
  if (v2 !== null) {
    const [quota, period] = v2.split(/\s+/);
    return ratio(quota, period);
  }
  return ratio(readOr(`${root}/cpu/cpu.cfs_quota_us`), readOr(`${root}/cpu/cpu.cfs_period_us`));
}

function ratio(quota: string | null | undefined, period: string | null | undefined): number | null {
  const q = Number(quota);
  const p = Number(period);
  // v2 writes "max", v1 writes -1 for no limit
  return Number.isFinite(q) && q > 0 && Number.isFinite(p) && p > 0 ? q / p : null;
}

function readOr(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

export function workerCount(setting: number | 'auto', quota: number | null = cpuQuota(), cpus = availableParallelism()): number {
  if (setting !== 'auto') return setting;
  return Math.max(1, Math.min(cpus, quota === null ? cpus : Math.ceil(quota - 1e-9)));
}
