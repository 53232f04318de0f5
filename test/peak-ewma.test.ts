import { describe, expect, it } from 'vitest';
import { DECAY_MS, PeakEwma } from '../src/cluster/peak-ewma.js';

describe('PeakEwma', () => {
  it('is 0 until the first sample, then that sample', () => {
    const ewma = new PeakEwma();
    expect(ewma.at(0)).toBe(0);
    expect(ewma.at(1e9)).toBe(0);
    ewma.observe(40, 1000);
    expect(ewma.at(1000)).toBe(40);
  });

  it('jumps to a slower try at once, however fresh the estimate', () => {
    const ewma = new PeakEwma();
    ewma.observe(10, 1000);
    ewma.observe(300, 1001);
    expect(ewma.at(1001)).toBe(300);
  });

  it('decays towards 0 with a 10 s time constant', () => {
    const ewma = new PeakEwma();
    ewma.observe(200, 5000);
    expect(DECAY_MS).toBe(10_000);
    expect(ewma.at(5000 + 10_000)).toBeCloseTo(200 / Math.E, 9);
    expect(ewma.at(5000 + 20_000)).toBeCloseTo(200 / Math.E ** 2, 9);
    expect(ewma.at(5000 + 1000)).toBeCloseTo(200 * Math.exp(-0.1), 9);
  });

  it('a faster try does not pull the estimate below its decay: the peak is forgotten at the decay rate', () => {
    const ewma = new PeakEwma();
    ewma.observe(500, 0);
    ewma.observe(5, 10_000);
    expect(ewma.at(10_000)).toBeCloseTo(500 / Math.E, 9);
    // ...and the decay goes on from there, not from the fast sample
    expect(ewma.at(20_000)).toBeCloseTo(500 / Math.E ** 2, 9);
  });

  it('settles at the latency of an endpoint answering steadily, once a peak has decayed below it', () => {
    const ewma = new PeakEwma();
    ewma.observe(500, 0);
    let now = 0;
    // 100 ms apart for 60 s: 500 ms decays below 20 ms after 10 s × ln 25 ≈ 32 s
    for (let i = 0; i < 600; i++) ewma.observe(20, (now += 100));
    expect(ewma.at(now)).toBe(20);
    expect(ewma.at(now + 100)).toBeCloseTo(20 * Math.exp(-0.01), 9);
  });

  it('a clock that goes backwards does not grow the estimate', () => {
    const ewma = new PeakEwma();
    ewma.observe(100, 5000);
    expect(ewma.at(4000)).toBe(100);
    ewma.observe(50, 4000);
    expect(ewma.at(5000)).toBeCloseTo(100 * Math.exp(-0.1), 9);
  });
});
