// Limits, breakers and rate-limit buckets shared by worker threads
// (src/workers/shared-state.ts, CONTRACT §12): real worker_threads running
// the compiled modules (test/fixtures/shared-worker.mjs) take from the same
// buffers at the same time, and the totals hold for all of them; a worker
// that exits without finishing gives back its share through resetWorkerSlot.
// The buffers' carry-over on a reload follows the snapshot's rules.

import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import type { CircuitBreakerConfig, Config } from '../src/config/types.js';
import { allocateBuckets, TokenBuckets } from '../src/proxy/rate-limit.js';
import {
  allocateCluster,
  allocateShared,
  breakerOffset,
  clusterBreakerState,
  resetWorkerSlot,
  type SharedBuffers,
} from '../src/workers/shared-state.js';
import { eventually } from './support/harness.js';

const FIXTURE = new URL('./fixtures/shared-worker.mjs', import.meta.url);

type Reply = Record<string, unknown>;

/** One worker thread of `count`, at slot `index`, answering the fixture's operations. */
class TestWorker {
  private constructor(readonly thread: Worker) {}

  static async start(index: number, count: number, gate: SharedArrayBuffer): Promise<TestWorker> {
    const thread = new Worker(FIXTURE, { workerData: { slot: { index, count }, gate } });
    running.push(thread);
    await once(thread, 'message');
    return new TestWorker(thread);
  }

  async run(op: string, args: Reply = {}): Promise<Reply> {
    this.thread.postMessage({ op, ...args });
    const [reply] = (await once(this.thread, 'message')) as [Reply];
    return reply;
  }

  /** Crashes the thread, as an uncaught error would: nothing it held is given back. */
  async crash(): Promise<void> {
    this.thread.postMessage({ op: 'exit' });
    await once(this.thread, 'exit');
  }
}

const running: Worker[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((w) => w.terminate()));
});

/** Runs `op` on every worker at once: each waits at the gate until all are ready. */
async function together(workers: TestWorker[], gate: SharedArrayBuffer, op: string, args: Reply = {}): Promise<Reply[]> {
  const word = new Int32Array(gate);
  const round = Atomics.load(word, 0) + 1;
  const replies = workers.map((w) => {
    w.thread.postMessage({ op, gated: round, ...args });
    return new Promise<Reply>((resolve) => {
      const onMessage = (m: Reply): void => {
        if (m.done !== true) return;
        w.thread.off('message', onMessage);
        resolve(m);
      };
      w.thread.on('message', onMessage);
    });
  });
  // every worker has posted ready once its first message arrived; the order of messages per thread is kept
  await Promise.all(workers.map((w) => once(w.thread, 'message')));
  Atomics.store(word, 0, round);
  Atomics.notify(word, 0);
  return Promise.all(replies);
}

async function startWorkers(count: number): Promise<{ workers: TestWorker[]; gate: SharedArrayBuffer }> {
  const gate = new SharedArrayBuffer(4);
  const workers = await Promise.all(Array.from({ length: count }, (_, i) => TestWorker.start(i, count, gate)));
  return { workers, gate };
}

describe('token buckets shared by worker threads', () => {
  it('two threads taking from one bucket at once admit exactly the burst', async () => {
    const { workers, gate } = await startWorkers(2);
    // a token every 1000 s: nothing refills during the test
    const buckets = { buffer: allocateBuckets(1), perSecond: 0.001, burst: 50_000 };
    for (const w of workers) await w.run('buckets', buckets);
    const replies = await together(workers, gate, 'take', { keys: [''], rounds: 50_000 });
    const admitted = replies.map((r) => (r.admitted as Record<string, number>)[''] ?? 0);
    expect(admitted[0]! + admitted[1]!).toBe(50_000);
  });

  it('per-key buckets: each key admits exactly its burst over both threads', async () => {
    const { workers, gate } = await startWorkers(2);
    const buckets = { buffer: allocateBuckets(1000), perSecond: 0.001, burst: 200 };
    for (const w of workers) await w.run('buckets', buckets);
    const keys = Array.from({ length: 20 }, (_, i) => `10.0.0.${i}`);
    const replies = await together(workers, gate, 'take', { keys, rounds: 300 });
    for (const k of keys) {
      const total = replies.reduce((sum, r) => sum + (r.admitted as Record<string, number>)[k]!, 0);
      expect(total, k).toBe(200);
    }
  });

  it('a set left locked by a crashed worker is unlocked by resetWorkerSlot', () => {
    const buffer = allocateBuckets(16); // 2 sets of 8
    const locks = new Int32Array(buffer, 24, 2); // after the header's 6 Int32s
    Atomics.store(locks, 0, 2); // held by worker 1
    Atomics.store(locks, 1, 2);
    resetWorkerSlot({ clusters: new Map(), routes: new Map([['l/r', buffer]]) }, { index: 1, count: 2 });
    expect([...locks]).toEqual([0, 0]);
    const b = new TokenBuckets(1, 1, buffer, 0);
    expect([b.take('a'), b.take('a')]).toEqual([0, 1]);
  });
});

const LIMITS: CircuitBreakerConfig = {
  maxRequests: 100_000,
  maxPendingRequests: 100_000,
  maxRetries: 100_000,
  volumeThreshold: 20,
  window: 10_000,
  resetTimeout: 300,
};

describe('concurrency limits shared by worker threads', () => {
  it('maxRequests holds over both threads; a crashed worker\'s places are given back by resetWorkerSlot', async () => {
    const { workers, gate } = await startWorkers(2);
    const buffer = allocateCluster(2);
    const buffers: SharedBuffers = { clusters: new Map([['app', buffer]]), routes: new Map() };
    const limits = { buffer, cfg: LIMITS, budget: { percent: 20, minConcurrency: 3 } };
    for (const w of workers) await w.run('limits', limits);
    const replies = await together(workers, gate, 'admit', { n: 80_000 });
    const admitted = replies.map((r) => r.admitted as number);
    expect(admitted[0]! + admitted[1]!).toBe(100_000);
    expect(replies.map((r) => r.active)).toEqual(admitted);
    expect((await workers[0]!.run('admit', { n: 1 })).admitted).toBe(0);

    await workers[1]!.crash();
    resetWorkerSlot(buffers, { index: 1, count: 2 });
    const replacement = await TestWorker.start(1, 2, gate);
    await replacement.run('limits', limits);
    expect(await replacement.run('admit', { n: 100_000 })).toMatchObject({ admitted: admitted[1], active: admitted[1] });
  });

  it('the retry budget counts the requests in flight of every thread', async () => {
    const { workers, gate } = await startWorkers(2);
    const limits = { buffer: allocateCluster(2), cfg: LIMITS, budget: { percent: 20, minConcurrency: 3 } };
    for (const w of workers) await w.run('limits', limits);
    await together(workers, gate, 'admit', { n: 50_000 });
    // 20% of 100,000 in flight tandem-wide, not of either worker's 50,000
    const replies = await together(workers, gate, 'retries', { n: 15_000 });
    expect((replies[0]!.begun as number) + (replies[1]!.begun as number)).toBe(20_000);
  });
});

describe('error-rate breaker shared by worker threads', () => {
  const BREAKER = { ...LIMITS, errorThresholdPercentage: 50 };

  async function breakerWorkers(): Promise<{ workers: TestWorker[]; gate: SharedArrayBuffer; buffers: SharedBuffers }> {
    const { workers, gate } = await startWorkers(2);
    const buffer = allocateCluster(2);
    for (const w of workers) await w.run('breaker', { buffer, offset: breakerOffset(2), cfg: BREAKER });
    return { workers, gate, buffers: { clusters: new Map([['app', buffer]]), routes: new Map() } };
  }

  async function halfOpen(w: TestWorker): Promise<boolean> {
    return eventually(async () => (await w.run('state')).state === 'half_open', 3000);
  }

  it('failures seen by two threads, neither reaching the volume alone, open it for both; one trial goes out; its success closes it for both', async () => {
    const { workers, gate, buffers } = await breakerWorkers();
    const fails = await together(workers, gate, 'fail', { n: 10 });
    expect(clusterBreakerState(buffers, 'app', 2)).toBe('open');
    expect(fails.map((r) => r.state)).toContain('open');
    for (const w of workers) expect(await w.run('allow')).toMatchObject({ allowed: false });
    for (const w of workers) expect(await w.run('state')).toMatchObject({ state: 'open', changes: ['open'] });

    expect(await halfOpen(workers[0]!)).toBe(true);
    expect(await halfOpen(workers[1]!)).toBe(true);
    const trials = await together(workers, gate, 'allow');
    expect(trials.map((r) => r.allowed).sort()).toEqual([false, true]);
    const holder = workers[trials.findIndex((r) => r.allowed === true)]!;
    const other = workers.find((w) => w !== holder)!;
    // an outcome from the worker without the trial decides nothing
    expect(await other.run('record', { ok: true })).toMatchObject({ state: 'half_open' });
    expect(await holder.run('record', { ok: true })).toMatchObject({ state: 'closed' });
    expect(await other.run('state')).toMatchObject({ state: 'closed', changes: ['open', 'half_open', 'closed'] });
    expect(clusterBreakerState(buffers, 'app', 2)).toBe('closed');
  });

  it('a trial held by a crashed worker is freed by resetWorkerSlot', async () => {
    const { workers, buffers } = await breakerWorkers();
    await workers[0]!.run('fail', { n: 20 });
    expect(await halfOpen(workers[1]!)).toBe(true);
    expect(await workers[1]!.run('allow')).toMatchObject({ allowed: true });
    await workers[1]!.crash();
    expect(await workers[0]!.run('allow')).toMatchObject({ allowed: false });
    resetWorkerSlot(buffers, { index: 1, count: 2 });
    expect(await workers[0]!.run('allow')).toMatchObject({ allowed: true });
    expect(await workers[0]!.run('record', { ok: false })).toMatchObject({ state: 'open' });
  });

  it('a worker started while the breaker is open joins it', async () => {
    const { workers, gate } = await startWorkers(1);
    const buffer = allocateCluster(2);
    await workers[0]!.run('breaker', { buffer, offset: breakerOffset(2), cfg: BREAKER });
    await workers[0]!.run('fail', { n: 20 });
    const late = await TestWorker.start(1, 2, gate);
    await late.run('breaker', { buffer, offset: breakerOffset(2), cfg: BREAKER });
    expect(await late.run('state')).toMatchObject({ state: 'open', changes: ['open'] });
    expect(await halfOpen(late)).toBe(true);
  });
});

describe('allocateShared', () => {
  function config(clusterExtra: string, rateLimit: string, routeName = 'r'): Config {
    const loaded = loadConfigText(
      [
        'listeners:',
        '  - name: l',
        '    port: 15000',
        '    routes:',
        `      - name: ${routeName}`,
        '        match: { prefix: / }',
        '        cluster: app',
        `        rateLimit: ${rateLimit}`,
        '      - name: free',
        '        match: { prefix: /free }',
        '        cluster: other',
        'clusters:',
        '  - name: app',
        '    endpoints: [127.0.0.1:8080]',
        clusterExtra,
        '  - name: other',
        '    endpoints: [127.0.0.1:8081]',
        '',
      ].join('\n'),
      'f.yaml',
    );
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    return loaded.config;
  }

  it('a buffer per cluster, one per rate-limited route', () => {
    const s = allocateShared(config('', '{ requestsPerSecond: 5 }'), 2);
    expect([...s.clusters.keys()]).toEqual(['app', 'other']);
    expect([...s.routes.keys()]).toEqual(['l/r']);
    expect(s.clusters.get('app')!.byteLength).toBe(allocateCluster(2).byteLength);
  });

  it('keeps the buffers of unchanged clusters and routes, and only those', () => {
    const first = config('', '{ requestsPerSecond: 5 }');
    const buffers = allocateShared(first, 2);
    const same = allocateShared(config('', '{ requestsPerSecond: 5 }'), 2, { config: first, buffers });
    expect(same.clusters.get('app')).toBe(buffers.clusters.get('app'));
    expect(same.clusters.get('other')).toBe(buffers.clusters.get('other'));
    expect(same.routes.get('l/r')).toBe(buffers.routes.get('l/r'));

    const changed = allocateShared(config('    circuitBreaker: { maxRequests: 7 }', '{ requestsPerSecond: 6 }'), 2, { config: first, buffers });
    expect(changed.clusters.get('app')).not.toBe(buffers.clusters.get('app'));
    expect(changed.clusters.get('other')).toBe(buffers.clusters.get('other'));
    expect(changed.routes.get('l/r')).not.toBe(buffers.routes.get('l/r'));

    const renamed = allocateShared(config('', '{ requestsPerSecond: 5 }', 'r2'), 2, { config: first, buffers });
    expect(renamed.routes.get('l/r2')).not.toBe(buffers.routes.get('l/r'));
    // sized for another number of workers: fresh
    const resized = allocateShared(first, 3, { config: first, buffers });
    expect(resized.clusters.get('app')).not.toBe(buffers.clusters.get('app'));
  });
});
