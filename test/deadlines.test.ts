import { describe, expect, it } from 'vitest';
import { deadlinesOf } from '../src/proxy/deadlines.js';

const deadline = <T>(ms: number, fire: (arg: T) => void, arg: T) => deadlinesOf(ms).add(fire, arg);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('deadlines', () => {
  it('fires each deadline once, in order, no earlier than its duration after it was set', async () => {
    const fired: Array<{ id: number; late: number }> = [];
    const set: number[] = [];
    for (let id = 0; id < 5; id++) {
      const at = performance.now();
      set.push(at);
      deadline(60, (n: number) => fired.push({ id: n, late: performance.now() - at - 60 }), id);
      await sleep(15);
    }
    await sleep(150);
    expect(fired.map((f) => f.id)).toEqual([0, 1, 2, 3, 4]);
    for (const f of fired) {
      // Node's own timers may run up to a millisecond early by performance.now()
      expect(f.late).toBeGreaterThanOrEqual(-1.5);
      expect(f.late).toBeLessThan(60);
    }
  });

  it('never fires a cancelled deadline, and the ones after it still fire on their own time', async () => {
    const fired: string[] = [];
    let laterAt = 0;
    let laterFiredAt = 0;
    const first = deadline(50, (s: string) => fired.push(s), 'first');
    await sleep(25);
    laterAt = performance.now();
    deadline(50, (s: string) => {
      laterFiredAt = performance.now();
      fired.push(s);
    }, 'later');
    first.cancel();
    first.cancel();
    // the timer armed for the first one comes and goes; the later one waits for its own time
    await sleep(100);
    expect(fired).toEqual(['later']);
    expect(laterFiredAt - laterAt).toBeGreaterThanOrEqual(48.5);
  });

  it('keeps durations apart: a short deadline set after a long one fires first', async () => {
    const fired: string[] = [];
    deadline(120, (s: string) => fired.push(s), 'long');
    deadline(20, (s: string) => fired.push(s), 'short');
    await sleep(200);
    expect(fired).toEqual(['short', 'long']);
  });

  it('ignores a cancel after the deadline fired', async () => {
    let count = 0;
    const d = deadline(10, () => count++, null);
    await sleep(40);
    d.cancel();
    expect(count).toBe(1);
    const again = deadline(10, () => count++, null);
    await sleep(40);
    expect(count).toBe(2);
    again.cancel();
  });

  it('does not keep the process alive on its own', async () => {
    const { spawnSync } = await import('node:child_process');
    const started = Date.now();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e',
      `import { deadlinesOf } from ${JSON.stringify(new URL('../dist/proxy/deadlines.js', import.meta.url).href)}; deadlinesOf(30000).add(() => console.log('fired'), null);`]);
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toBe('');
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
