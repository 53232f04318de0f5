// gRPC health checks (healthCheck.grpc): grpc.health.v1.Health/Check calls
// to a real @grpc/grpc-js server whose health service is written here from
// the protocol's .proto definition, over h2c and over TLS h2, switching
// between SERVING and NOT_SERVING; and endpoints that are dead or answer
// something other than a health response.

import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { writeFileSync } from 'node:fs';
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { Endpoint } from '../src/cluster/endpoint.js';
import { healthCheckRequest, servingStatus } from '../src/cluster/grpc-health.js';
import { HealthChecker } from '../src/cluster/health.js';
import type { ClusterProtocol, HealthCheckConfig } from '../src/config/types.js';
import { certDir, type CertDir } from './support/certs.js';
import { startH2Upstream } from './support/h2-upstream.js';
import { deadPort, eventually, expectTandemError, metricValue, simpleConfig, startTandem, useCleanup } from './support/harness.js';

const cleanup = useCleanup();

const HEALTH_PROTO = `
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
`;

type Status = 'SERVING' | 'NOT_SERVING';

interface HealthServer {
  port: number;
  /** the status of each service the server knows; others get NOT_FOUND, as the reference implementation answers */
  statuses: Map<string, Status>;
  /** the service name of every Check call, in order */
  asked: string[];
  close(): Promise<void>;
}

let dir: CertDir;
let healthService: grpc.ServiceDefinition;

beforeAll(() => {
  dir = certDir('tandem-grpc-health-');
  writeFileSync(dir.file('health.proto'), HEALTH_PROTO);
  const pkg = grpc.loadPackageDefinition(loadSync(dir.file('health.proto'), { enums: String, defaults: true })) as unknown as {
    grpc: { health: { v1: { Health: { service: grpc.ServiceDefinition } } } };
  };
  healthService = pkg.grpc.health.v1.Health.service;
  dir.make('ca', '/CN=Test CA', { isCa: true });
  dir.make('server', '/CN=server', { ca: 'ca', san: 'IP:127.0.0.1' });
});

async function startHealthServer(tls = false): Promise<HealthServer> {
  const statuses = new Map<string, Status>([['', 'SERVING']]);
  const asked: string[] = [];
  const server = new grpc.Server();
  server.addService(healthService, {
    Check(call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<{ status: Status }>) {
      asked.push(call.request.service);
      const status = statuses.get(call.request.service);
      if (status === undefined) callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
      else callback(null, { status });
    },
  });
  const credentials = tls
    ? grpc.ServerCredentials.createSsl(null, [{ private_key: dir.pem('server.key'), cert_chain: dir.pem('server.crt') }])
    : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, bound) => (err === null ? resolve(bound) : reject(err))),
  );
  return cleanup.add({ port, statuses, asked, close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) });
}

const FAST = { interval: 30, timeout: 500, healthyThreshold: 1, unhealthyThreshold: 1 };

/** One endpoint of a cluster of `protocol` on `port`, probed by a started checker. */
function check(port: number, cfg: Partial<HealthCheckConfig>, protocol: ClusterProtocol = 'h2c'): Endpoint {
  const tls = protocol === 'h2' ? { caFile: dir.file('ca.crt') } : undefined;
  const endpoint = new Endpoint(
    { address: '127.0.0.1', port, weight: 1 },
    { connectTimeout: 500, pool: { connections: 1, keepAliveTimeout: 4000 }, protocol, ...(tls === undefined ? {} : { tls }) },
  );
  const checker = new HealthChecker({ ...FAST, ...cfg }, [endpoint], () => undefined);
  checker.start();
  cleanup.add({ close: () => checker.close() });
  cleanup.add({ close: () => endpoint.destroy() });
  return endpoint;
}

describe('gRPC health checks', () => {
  it('follows the server between SERVING and NOT_SERVING over h2c, asking about the configured service', async () => {
    const server = await startHealthServer();
    server.statuses.set('app.Greeter', 'SERVING');
    const endpoint = check(server.port, { grpc: { service: 'app.Greeter' } });
    expect(await eventually(() => server.asked.length >= 2)).toBe(true);
    expect(endpoint.healthy).toBe(true);
    server.statuses.set('app.Greeter', 'NOT_SERVING');
    expect(await eventually(() => !endpoint.healthy)).toBe(true);
    server.statuses.set('app.Greeter', 'SERVING');
    expect(await eventually(() => endpoint.healthy)).toBe(true);
    expect(new Set(server.asked)).toEqual(new Set(['app.Greeter']));
  });

  it.each(['h2c', 'h2'] as const)('asks about the whole server with service "" over %s', async (protocol) => {
    const server = await startHealthServer(protocol === 'h2');
    const endpoint = check(server.port, { grpc: { service: '' } }, protocol);
    expect(await eventually(() => server.asked.length >= 2)).toBe(true);
    expect(endpoint.healthy).toBe(true);
    expect(new Set(server.asked)).toEqual(new Set(['']));
    server.statuses.set('', 'NOT_SERVING');
    expect(await eventually(() => !endpoint.healthy)).toBe(true);
    server.statuses.set('', 'SERVING');
    expect(await eventually(() => endpoint.healthy)).toBe(true);
  });

  it('marks unhealthy a service the server does not know (grpc-status NOT_FOUND)', async () => {
    const server = await startHealthServer();
    const endpoint = check(server.port, { grpc: { service: 'nobody' } });
    expect(await eventually(() => !endpoint.healthy)).toBe(true);
    expect(server.asked[0]).toBe('nobody');
  });

  it('marks a dead endpoint unhealthy', async () => {
    const endpoint = check(await deadPort(), { grpc: { service: '' } });
    expect(await eventually(() => !endpoint.healthy)).toBe(true);
  });

  it('marks unhealthy an endpoint that answers with anything but a SERVING health response', async () => {
    const answers = [
      // 200 without grpc-status
      { headers: { ':status': 200, 'content-type': 'application/grpc' }, body: healthResponse(1), trailers: null },
      // grpc-status 0, but no message
      { headers: { ':status': 200, 'content-type': 'application/grpc' }, body: Buffer.alloc(0), trailers: { 'grpc-status': '0' } },
      // grpc-status 0 and SERVING, but HTTP 503
      { headers: { ':status': 503, 'content-type': 'application/grpc' }, body: healthResponse(1), trailers: { 'grpc-status': '0' } },
    ];
    for (const answer of answers) {
      const up = cleanup.add(
        await startH2Upstream((stream) => {
          stream.respond(answer.headers, { waitForTrailers: answer.trailers !== null });
          if (answer.trailers !== null) stream.on('wantTrailers', () => stream.sendTrailers(answer.trailers!));
          stream.end(answer.body);
        }),
      );
      const endpoint = check(up.port, { grpc: { service: '' } });
      expect(await eventually(() => !endpoint.healthy)).toBe(true);
      expect(up.seen[0]!.headers).toMatchObject({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check', 'content-type': 'application/grpc', te: 'trailers' });
      expect(up.seen[0]!.body).toEqual(Buffer.from([0, 0, 0, 0, 0]));
    }
  });

  it('takes an endpoint out of rotation through the configuration: 503 no_healthy_upstream while NOT_SERVING', async () => {
    const server = await startHealthServer();
    const t = cleanup.add(
      await startTandem(
        simpleConfig([server.port], '', 'protocol: h2c\nhealthCheck: { grpc: { service: "" }, interval: 30ms, unhealthyThreshold: 1, healthyThreshold: 1 }'),
      ),
    );
    const healthy = (): Promise<number | undefined> =>
      metricValue(t.adminUrl, 'tandem_endpoint_healthy', { cluster: 'app', endpoint: `127.0.0.1:${server.port}` });
    expect(await eventually(async () => server.asked.length >= 1 && (await healthy()) === 1)).toBe(true);
    server.statuses.set('', 'NOT_SERVING');
    expect(await eventually(async () => (await healthy()) === 0)).toBe(true);
    await expectTandemError(await request(`${t.url}/x`), 503, 'no_healthy_upstream');
  });
});

/** A framed HealthCheckResponse with `status`, as a server would send it. */
function healthResponse(status: number): Buffer {
  return Buffer.from([0, 0, 0, 0, 2, 0x08, status]);
}

describe('gRPC health messages', () => {
  it('frames the request: empty for the whole server, the service name as field 1 otherwise', () => {
    expect(healthCheckRequest('')).toEqual(Buffer.from([0, 0, 0, 0, 0]));
    expect(healthCheckRequest('a.B')).toEqual(Buffer.from([0, 0, 0, 0, 5, 0x0a, 3, 0x61, 0x2e, 0x42]));
  });

  it('reads the status, skips unknown fields and refuses what is not one uncompressed message', () => {
    expect(servingStatus(healthResponse(1))).toBe(1);
    expect(servingStatus(healthResponse(2))).toBe(2);
    // an absent status is proto3's default, UNKNOWN
    expect(servingStatus(Buffer.from([0, 0, 0, 0, 0]))).toBe(0);
    // unknown fields of each wire type around the status
    const fields = [0x10, 0x96, 0x01, 0x1a, 2, 0x61, 0x62, 0x21, ...Array<number>(8).fill(7), 0x2d, 1, 2, 3, 4, 0x08, 1];
    expect(servingStatus(Buffer.from([0, 0, 0, 0, fields.length, ...fields]))).toBe(1);
    // compressed, cut short, two messages, a varint that never ends, wire type 3
    expect(servingStatus(Buffer.from([1, 0, 0, 0, 2, 0x08, 1]))).toBeNull();
    expect(servingStatus(Buffer.from([0, 0, 0, 0, 2, 0x08]))).toBeNull();
    expect(servingStatus(Buffer.concat([healthResponse(1), healthResponse(1)]))).toBeNull();
    expect(servingStatus(Buffer.from([0, 0, 0, 0, 2, 0x08, 0x80]))).toBeNull();
    expect(servingStatus(Buffer.from([0, 0, 0, 0, 2, 0x0b, 1]))).toBeNull();
    // a length-delimited field longer than the message
    expect(servingStatus(Buffer.from([0, 0, 0, 0, 3, 0x1a, 5, 0x61]))).toBeNull();
  });
});
