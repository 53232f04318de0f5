// Head to head: tandem and one peer loaded at the same time, both pinned to
// the proxy CPU, each by its own load client. The scheduler shares that CPU
// between the two for the very same seconds, so a slowdown of the VM hits
// both alike and cancels out of their ratios, which rounds run one after the
// other cannot promise on a machine whose speed drifts (bench/README.md).
// Both saturated, each gets about half the CPU: their req/s ratio and their
// CPU-per-request ratio then tell the same thing from two sides.
import { measure } from './setup.js';
import { median, spread } from './report.js';

const SMALL_GET = { kind: 'closed', path: '/small', connections: 50 };

/** `tandem` against each of `peers` (running proxies), `rounds` times `durationS` seconds each. */
export async function headToHead({ tandem, peers, ctx, rounds, durationS }) {
  const scenario = { ...SMALL_GET, durationS };
  const out = [];
  for (const peer of peers) {
    const runs = [];
    for (let round = 1; round <= rounds; round += 1) {
      const [ours, theirs] = await Promise.all([measure(tandem.proxy, scenario, ctx), measure(peer.proxy, scenario, ctx)]);
      runs.push({ round, tandem: ours, peer: theirs });
      console.log(`head to head round ${round} tandem ${ours.rps.toFixed(0)} req/s ${ours.cpuUsPerReq?.toFixed(1)} µs/req vs ${peer.name} ${theirs.rps.toFixed(0)} req/s ${theirs.cpuUsPerReq?.toFixed(1)} µs/req`);
    }
    out.push({
      peer: peer.name,
      label: peer.label,
      tandemRps: median(runs.map((r) => r.tandem.rps)),
      peerRps: median(runs.map((r) => r.peer.rps)),
      tandemCpuUsPerReq: median(runs.map((r) => r.tandem.cpuUsPerReq)),
      peerCpuUsPerReq: median(runs.map((r) => r.peer.cpuUsPerReq)),
      rpsRatio: spread(runs.map((r) => r.tandem.rps / r.peer.rps)),
      cpuRatio: spread(runs.map((r) => r.tandem.cpuUsPerReq / r.peer.cpuUsPerReq)),
      failures: runs.reduce((n, r) => n + r.tandem.failures + r.peer.failures, 0),
      runs,
    });
  }
  return out;
}
