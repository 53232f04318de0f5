import { lookup } from 'node:dns/promises';
import { after, cancel, type Timer } from '../clock.js';
import type { DnsConfig, EndpointConfig } from '../config/types.js';
import { log } from '../observability/log.js';

/** Every address a name resolves to; an empty answer counts as a failure. */
export type Resolver = (name: string) => Promise<readonly string[]>;

/**
 * getaddrinfo rather than the resolver's A/AAAA queries: it reads
 * /etc/hosts and resolv.conf's search domains as every other program on the
 * host does (a short Kubernetes name such as `app.default.svc` works, and
 * `localhost` works without a DNS server), and it still answers with every
 * address, one per Pod for a headless Service. It runs on libuv's thread
 * pool, which one lookup per cluster per refreshInterval does not strain.
 */
export async function lookupAll(name: string): Promise<readonly string[]> {
  const records = await lookup(name, { all: true, order: 'verbatim' });
  return records.map((r) => r.address);
}

/**
 * Keeps a cluster's endpoints in step with a DNS name: resolves at start,
 * then `refreshInterval` after each resolution ends (so they never overlap),
 * and hands every changed set of addresses to `onChange`. A failed
 * resolution keeps the last good set; the failure is logged once per streak.
 */
export class DnsDiscovery {
  private timer: Timer | undefined;
  private started = false;
  private closed = false;
  private failing = false;
  /** the sorted addresses last handed over, to skip unchanged answers */
  private last = '';

  constructor(
    private readonly cluster: string,
    private readonly cfg: DnsConfig,
    private readonly onChange: (endpoints: EndpointConfig[]) => void,
    private readonly resolve: Resolver = lookupAll,
  ) {}

  start(): void {
    if (this.closed || this.started) return;
    this.started = true;
    void this.refresh();
  }

  close(): void {
    this.closed = true;
    cancel(this.timer);
    this.timer = undefined;
  }

  private async refresh(): Promise<void> {
    this.timer = undefined;
    let addresses: string[];
    try {
      // A zone-scoped IPv6 address (fe80::1%eth0) cannot be written in an origin URL: no pool could reach it.
      addresses = [...new Set(await this.resolve(this.cfg.name))].filter((a) => !a.includes('%')).sort();
      if (addresses.length === 0) throw new Error(`${this.cfg.name} has no addresses`);
    } catch (err) {
      if (this.closed) return;
      this.schedule();
      if (!this.failing) {
        this.failing = true;
        log.warn(
          { cluster: this.cluster, name: this.cfg.name, err: (err as Error).message },
          'dns resolution failed: keeping the last endpoints',
        );
      }
      return;
    }
    if (this.closed) return;
    this.schedule();
    if (this.failing) {
      this.failing = false;
      log.info({ cluster: this.cluster, name: this.cfg.name }, 'dns resolution succeeded again');
    }
    const signature = addresses.join(' ');
    if (signature === this.last) return;
    try {
      this.onChange(addresses.map((address) => ({ address, port: this.cfg.port, weight: 1 })));
      this.last = signature;
    } catch (err) {
      // Runs from a timer: a throw here would end the process. The same answer is tried again next time.
      log.error({ cluster: this.cluster, name: this.cfg.name, err: (err as Error).message }, 'dns endpoints could not be applied');
    }
  }

  private schedule(): void {
    this.timer = after(this.cfg.refreshInterval, () => void this.refresh());
  }
}
