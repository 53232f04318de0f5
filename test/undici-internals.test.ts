// src/undici.ts takes Pool, Client and errors from undici's own files
// instead of its index (RSS): they must be the very objects the index
// exports, or an undici upgrade moved them.

import { expect, test } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import * as undici from 'undici';
import { Client, Pool, errors, kConnected, request } from '../src/undici.js';

const require = createRequire(import.meta.url);

test("undici's Pool, Client and errors, taken from their files, are the package's own", () => {
  expect(Pool).toBe(undici.Pool);
  expect(Client).toBe(undici.Client);
  expect(errors).toBe(undici.errors);
  expect(typeof Pool.prototype.dispatch).toBe('function');
});

test('request() runs the very function the index puts on every dispatcher', async () => {
  const server = http.createServer((_req, res) => res.end('pong'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  try {
    const res = await request(pool, { method: 'GET', path: '/' });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('pong');
    // request() calls undici's api-request with the pool as `this`: the index's method is that function
    expect(undici.Dispatcher.prototype.request).toBe(require('undici/lib/api/api-request.js'));
  } finally {
    await pool.close();
    server.close();
  }
});

test("kConnected is the getter by which a Client tells whether its connection is open (src/cluster/reuse-tracking-client.ts reads it)", async () => {
  expect(typeof Object.getOwnPropertyDescriptor(Client.prototype, kConnected)?.get).toBe('function');
  const server = http.createServer((_req, res) => res.end('pong'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = new Client(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const connected = () => (client as unknown as Record<symbol, boolean>)[kConnected];
  try {
    expect(connected()).toBe(false);
    const res = await request(client, { method: 'GET', path: '/' });
    await res.body.text();
    expect(connected()).toBe(true);
  } finally {
    await client.close();
    server.close();
  }
});
