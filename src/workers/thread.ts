// A worker thread (docs/workers.md): the listeners and snapshot of a
// LocalFleet, bound with SO_REUSEPORT beside the other workers'; its access
// log relayed to the main thread, its metrics read by it on each scrape.

import { parentPort, workerData } from 'node:worker_threads';
import { relayAccessLog } from '../observability/access-log.js';
import { Metrics } from '../observability/metrics.js';
import { LocalFleet } from './local.js';
import type { ThreadCall, ThreadMessage, ThreadStart } from './messages.js';

const port = parentPort!;
const start = workerData as ThreadStart;
const post = (m: ThreadMessage, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer);

const metrics = new Metrics(false);
// Every batch is the relay's own buffer, never written again: it moves, uncopied.
const accessLog = relayAccessLog(start.config.accessLog, (bytes) =>
  post({ type: 'log', bytes }, [bytes.buffer as ArrayBuffer]),
);
const fleet = new LocalFleet(start.config, start.version, metrics, accessLog, {
  shared: start.shared,
  slot: { index: start.index, count: start.count },
});

async function answer(call: ThreadCall): Promise<unknown> {
  switch (call.op) {
    case 'metrics':
      fleet.syncBreakers();
      return metrics.registry.getMetricsAsJSON();
    case 'clusters':
      return fleet.clustersView();
    case 'apply':
      return fleet.apply(call.config, call.version, call.shared);
    case 'flush':
      return fleet.flushAccessLog();
    case 'beginDrain':
      return fleet.beginDrain();
    case 'finish':
      return fleet.finish(call.timeoutMs);
  }
}

port.on('message', (call: ThreadCall) => {
  answer(call).then(
    (value) => {
      post({ type: 'reply', id: call.id, value });
      // the last word: nothing is left to serve, and the thread ends with its event loop
      if (call.op === 'finish') port.close();
    },
    (err: unknown) => post({ type: 'reply', id: call.id, error: err instanceof Error ? err.message : String(err) }),
  );
});

try {
  await fleet.listen();
  post({ type: 'listening', bound: fleet.bound });
} catch (err) {
  post({ type: 'failed', message: (err as Error).message });
  await fleet.close();
  port.close();
}
