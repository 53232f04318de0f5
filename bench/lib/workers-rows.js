// Workers (issue 13): tandem with `workers: 1` and `workers: 2`, each free
// to run on both CPUs, under the same small-GET load in interleaved rounds.
// wrk and the upstreams stay on the load CPU, so on this 2-core machine
// two workers share a core with them: req/s shows what a second worker
// adds here, CPU per request what it costs (the target: at most 10% more).
import { startTandem, PROXY_CPU, LOAD_CPU } from './peers.js';

const BOTH_CPUS = `${PROXY_CPU},${LOAD_CPU}`;

export const WORKERS = 'workers';

export const WORKER_PEERS = [
  { name: 'tandem-w1', label: 'tandem, workers: 1 (both CPUs)', start: (ctx) => startTandem({ ...ctx, tag: 'tandem-w1', workers: 1, cpus: BOTH_CPUS }) },
  { name: 'tandem-w2', label: 'tandem, workers: 2 (both CPUs)', start: (ctx) => startTandem({ ...ctx, tag: 'tandem-w2', workers: 2, cpus: BOTH_CPUS }) },
];

export function workersScenario(durationS) {
  return { name: 'workers-small-get', label: 'small GET, tandem on both CPUs (closed loop, 50 connections)', protocol: WORKERS, kind: 'closed', path: '/small', durationS, connections: 50 };
}
