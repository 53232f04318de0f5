// Reads tandem's admin API during a run: Prometheus metrics and the
// /clusters view, sampled on a fixed period so the harness can tell when an
// endpoint left rotation and how many tries went to it after that.

const LINE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Prometheus text format -> [{ name, labels, value }] (comments skipped). */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, key, value] of (m[2] ?? '').matchAll(LABEL)) labels[key] = value;
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** Sum of every sample named `name` whose labels include `where`. */
export function sumOf(samples, name, where = {}) {
  let total = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(where).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}

/** { labelValue: value } of `name` split by one label. */
export function byLabel(samples, name, label) {
  const out = {};
  for (const s of samples) if (s.name === name) out[s.labels[label]] = (out[s.labels[label]] ?? 0) + s.value;
  return out;
}

async function getJson(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.json();
}

async function getText(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.text();
}

export const readMetrics = async (adminOrigin) => parseMetrics(await getText(`${adminOrigin}/metrics`));
export const readClusters = (adminOrigin) => getJson(`${adminOrigin}/clusters`);

/**
 * Samples /clusters and /metrics every `periodMs` until stop() is called.
 * Each sample: { t (ms since `t0`), at (epoch ms), clusters, samples }.
 * A failed read is recorded as { t, at, error } and sampling goes on.
 */
export function startSampler(adminOrigin, { periodMs = 100, t0 = Date.now() } = {}) {
  const taken = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      try {
        const [clusters, samples] = await Promise.all([readClusters(adminOrigin), readMetrics(adminOrigin)]);
        taken.push({ t: at - t0, at, clusters, samples });
      } catch (err) {
        taken.push({ t: at - t0, at, error: err.message });
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, periodMs - (Date.now() - at))));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return taken;
    },
  };
}
