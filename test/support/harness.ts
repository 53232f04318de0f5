// Real sockets only: upstream HTTP servers and tandem itself on 127.0.0.1
// port 0, raw TCP clients for bytes that no HTTP client would send.

import { afterAll, afterEach, expect } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import { formatConfigError } from '../../src/config/errors.js';
import { Tandem } from '../../src/tandem.js';

export interface Upstream {
  readonly server: http.Server;
  readonly port: number;
  /** every request the upstream received, in order */
  readonly seen: SeenRequest[];
  close(): Promise<void>;
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

export type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

/** An upstream that records each request (body read fully) then calls `handler`. */
export async function startUpstream(handler: UpstreamHandler = okHandler): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body });
      handler(req, res, body);
    });
  });
  server.keepAliveTimeout = 10_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => closeServer(server),
  };
}

export function okHandler(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('ok');
}

/** Anything a test starts and must stop: servers, tandems, raw upstreams. */
export interface Closable {
  close(): Promise<unknown> | void;
}

export interface Cleanup {
  /** closes `x` after the current test; returns it so a start call can be wrapped */
  add<T extends Closable>(x: T): T;
}

/**
 * Registers one `afterEach` that closes everything added during the test,
 * last added first: tandem, started after its upstreams, stops before them.
 */
export function useCleanup(): Cleanup {
  let open: Closable[] = [];
  afterEach(async () => {
    const closing = open.reverse();
    open = [];
    for (const x of closing) await x.close();
  });
  return {
    add: (x) => {
      open.push(x);
      return x;
    },
  };
}

/** A TCP port that refuses connections (bound, then closed). */
export async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A raw TCP server: `onConnection` gets each socket (to reset, hang, send garbage). */
export async function startRawUpstream(onConnection: (socket: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onConnection(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface RunningTandem {
  readonly tandem: Tandem;
  /** the first listener's port */
  readonly port: number;
  readonly url: string;
  readonly adminPort: number;
  readonly adminUrl: string;
  readonly accessLogFile: string;
  /** access-log lines written so far, parsed (closes tandem first when `stop` is set) */
  close(): Promise<void>;
  accessLog(): Promise<Record<string, unknown>[]>;
}

const tempDirs: string[] = [];

/** A fresh directory under the system's temp folder, removed after the test file's last test. */
export function tempDir(prefix = 'tandem-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/**
 * Starts tandem in this process from YAML text. Listener ports should be 0;
 * the admin binds port 0 too. Unless the YAML sets `accessLog`, lines go
 * to a temp file, read back with `accessLog()`.
 */
export async function startTandem(yaml: string): Promise<RunningTandem> {
  const dir = tempDir();
  const accessLogFile = join(dir, 'access.log');
  const text = /^accessLog:/m.test(yaml) ? yaml : `accessLog: { format: json, path: ${accessLogFile} }\n${yaml}`;
  const loaded = loadConfigText(text, 'test.yaml');
  if (!loaded.ok) throw new Error(loaded.errors.map(formatConfigError).join('\n'));
  const tandem = new Tandem(loaded.config);
  await tandem.start({ adminPort: 0 });
  const port = tandem.boundListeners[0]!.port;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await tandem.close();
  };
  return {
    tandem,
    port,
    url: `http://127.0.0.1:${port}`,
    adminPort: tandem.adminPort,
    adminUrl: `http://127.0.0.1:${tandem.adminPort}`,
    accessLogFile,
    close,
    accessLog: async () => {
      await tandem.flushAccessLog();
      let text = '';
      try {
        text = readFileSync(accessLogFile, 'utf8');
      } catch {
        return [];
      }
      return text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
  };
}

/**
 * YAML for one listener `inbound` on 127.0.0.1 port 0, the admin on port 0
 * and no drain delay: the frame of a config written to a file. `accessLog` is
 * the block's value; `routes` and `clusters` are YAML list items at their
 * indentation (6 and 2 spaces).
 */
export function listenerYaml(accessLog: string, routes: string, clusters: string): string {
  return `accessLog: ${accessLog}
admin: { address: 127.0.0.1, port: 0 }
drain: { delay: 0s, timeout: 1s }
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
${routes}
clusters:
${clusters}
`;
}

/**
 * Starts tandem in this process from `file`, watching it for reloads.
 * `track` gets it before it starts, so the test's cleanup closes it even
 * when the start fails.
 */
export async function startFromFile(file: string, track: (t: Tandem) => unknown): Promise<Tandem> {
  const loaded = await loadConfigFile(file);
  if (!loaded.ok) throw new Error(loaded.errors.map(formatConfigError).join('\n'));
  const tandem = new Tandem(loaded.config);
  track(tandem);
  await tandem.start({ adminPort: 0, configFile: file });
  return tandem;
}

/** YAML for one listener on port 0 routing everything to one cluster; the extras are YAML lines for the route, cluster and listener. */
export function simpleConfig(endpoints: number[], routeExtra = '', clusterExtra = '', listenerExtra = ''): string {
  return `
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
${indent(listenerExtra, 4)}
    routes:
      - name: all
        match: { prefix: / }
        cluster: app
${indent(routeExtra, 8)}
clusters:
  - name: app
    endpoints: [${endpoints.map((p) => `127.0.0.1:${p}`).join(', ')}]
${indent(clusterExtra, 4)}
`;
}

function indent(text: string, n: number): string {
  const pad = ' '.repeat(n);
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => pad + l)
    .join('\n');
}

export interface RawResponse {
  /** everything the server sent until it closed the connection (or the timeout) */
  text: string;
  /** true when the server closed the connection */
  closed: boolean;
}

/**
 * Sends raw bytes and collects the answer until the server closes the
 * connection or `waitMs` passes without it.
 */
export function rawRequest(port: number, bytes: string | Buffer, waitMs = 1500): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const timer = setTimeout(() => done(false), waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => done(true));
    socket.on('close', () => done(true));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') done(true);
      else if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(err);
      }
    });
    socket.write(bytes);
  });
}

/** Status code of the first response in a raw answer, or 0. */
export function statusOf(raw: string): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
  return m ? Number(m[1]) : 0;
}

function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * One sample from tandem's admin /metrics: the series `name` whose labels
 * include every pair in `labels`; undefined when there is no such series.
 */
export async function metricValue(adminUrl: string, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const close = line.lastIndexOf('}');
    const labelText = close < 0 ? '' : line.slice(name.length + 1, close);
    if (wanted.every((w) => labelText.split(',').includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/**
 * The access log once it holds at least `count` lines: a line is written
 * when the response closes, which may be a moment after the client got it.
 */
export async function waitForAccessLog(t: RunningTandem, count = 1, withinMs = 2000): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const lines = await t.accessLog();
    if (lines.length >= count || Date.now() > deadline) return lines;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Polls `check` every 10 ms until it holds or `withinMs` passes; returns its last value. */
export async function eventually(check: () => boolean | Promise<boolean>, withinMs = 2000): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (!(await check())) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

/**
 * Asserts one of tandem's own error answers (CONTRACT §4): status,
 * `x-tandem-error`, JSON content type and a body whose requestId is the
 * `x-request-id` header.
 */
export async function expectTandemError(
  res: { statusCode: number; headers: Record<string, string | string[] | undefined>; body: { text(): Promise<string> } },
  status: number,
  code: string,
): Promise<{ error: string; message: string; requestId: string }> {
  const body = JSON.parse(await res.body.text()) as { error: string; message: string; requestId: string };
  expect(res.statusCode).toBe(status);
  expect(res.headers['x-tandem-error']).toBe(code);
  expect(res.headers['content-type']).toBe('application/json');
  expect(body.error).toBe(code);
  expect(typeof body.message).toBe('string');
  expect(body.message.length).toBeGreaterThan(0);
  expect(body.requestId).toMatch(/^[0-9a-f-]{36}$/);
  expect(body.requestId).toBe(res.headers['x-request-id']);
  return body;
}

export interface ParsedResponse {
  status: number;
  /** header lines in order, names lowercased */
  headers: [string, string][];
  /** body bytes as latin1 text, de-chunked */
  body: string;
  /** true when the body came chunked */
  chunked: boolean;
}

/** The values of header `name` (lowercase) in a parsed response. */
export function headerValues(res: ParsedResponse, name: string): string[] {
  return res.headers.filter(([n]) => n === name).map(([, v]) => v);
}

/** The single value of header `name`, or undefined. */
export function header(res: ParsedResponse, name: string): string | undefined {
  return headerValues(res, name)[0];
}

/**
 * expectTandemError for an answer read off a raw socket: status,
 * `x-tandem-error`, JSON content type, a body naming the code with the
 * `x-request-id` header's id and, with `close`, `connection: close`.
 */
export function expectRawTandemError(res: ParsedResponse | undefined, status: number, code: string, opts: { close?: boolean } = {}): void {
  expect(res).toBeDefined();
  expect(res!.status).toBe(status);
  expect(header(res!, 'x-tandem-error')).toBe(code);
  expect(header(res!, 'content-type')).toBe('application/json');
  if (opts.close) expect(header(res!, 'connection')).toBe('close');
  expect(JSON.parse(res!.body)).toEqual({ error: code, message: expect.any(String), requestId: header(res!, 'x-request-id') });
}

/**
 * Splits a raw answer into its responses (keep-alive, pipelining). Bodies are
 * framed by content-length or chunked encoding; 1xx, 204, 304 and the
 * responses whose index is in `bodiless` (HEAD requests) have none. A
 * trailing incomplete response is left out.
 */
export function parseResponses(raw: string, bodiless: number[] = []): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let at = 0;
  while (at < raw.length) {
    const headEnd = raw.indexOf('\r\n\r\n', at);
    if (headEnd === -1) break;
    const lines = raw.slice(at, headEnd).split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
    const headers = lines.slice(1).map((l): [string, string] => {
      const colon = l.indexOf(':');
      return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()];
    });
    at = headEnd + 4;
    const get = (n: string): string | undefined => headers.find(([h]) => h === n)?.[1];
    const index = out.length;
    const noBody = (status >= 100 && status < 200) || status === 204 || status === 304 || bodiless.includes(index);
    let body = '';
    let chunked = false;
    if (!noBody && /chunked/i.test(get('transfer-encoding') ?? '')) {
      chunked = true;
      let complete = false;
      while (at < raw.length) {
        const lineEnd = raw.indexOf('\r\n', at);
        if (lineEnd === -1) break;
        const size = parseInt(raw.slice(at, lineEnd), 16);
        if (size === 0) {
          const end = raw.indexOf('\r\n\r\n', lineEnd);
          if (end === -1) break;
          at = end + 4;
          complete = true;
          break;
        }
        body += raw.slice(lineEnd + 2, lineEnd + 2 + size);
        at = lineEnd + 2 + size + 2;
      }
      if (!complete) break;
    } else if (!noBody && get('content-length') !== undefined) {
      const len = Number(get('content-length'));
      if (at + len > raw.length) break;
      body = raw.slice(at, at + len);
      at += len;
    } else if (!noBody && !(status >= 100 && status < 200)) {
      // framed by the connection closing
      body = raw.slice(at);
      at = raw.length;
    }
    if (!(status >= 100 && status < 200)) out.push({ status, headers, body, chunked });
  }
  return out;
}

/** A raw TCP client kept open: write in pieces, wait for what comes back. */
export interface RawClient {
  readonly socket: net.Socket;
  /** everything received so far, latin1 */
  text(): string;
  /** true once the server closed (FIN or reset) */
  closed(): boolean;
  write(bytes: string | Buffer): void;
  /** resolves with the text once `until(text)` holds; rejects after `ms` */
  waitFor(until: (text: string) => boolean, ms?: number): Promise<string>;
  /** resolves true when the server closes within `ms`, false otherwise */
  waitClosed(ms?: number): Promise<boolean>;
  destroy(): void;
}

export async function rawClient(port: number): Promise<RawClient> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const chunks: Buffer[] = [];
  let isClosed = false;
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of waiters) w();
  };
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    wake();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    isClosed = true;
    wake();
  });
  socket.on('end', () => {
    isClosed = true;
    wake();
  });
  const text = (): string => Buffer.concat(chunks).toString('latin1');
  const wait = (check: () => boolean, ms: number): Promise<boolean> =>
    new Promise((resolve) => {
      if (check()) return resolve(true);
      const w = (): void => {
        if (!check()) return;
        waiters.delete(w);
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        waiters.delete(w);
        resolve(false);
      }, ms);
      waiters.add(w);
    });
  return {
    socket,
    text,
    closed: () => isClosed,
    write: (bytes) => {
      if (!socket.destroyed) socket.write(bytes);
    },
    waitFor: async (until, ms = 2000) => {
      if (!(await wait(() => until(text()) || isClosed, ms)) || !until(text())) {
        throw new Error(`waitFor: condition not met (closed=${isClosed}); got ${JSON.stringify(text().slice(0, 500))}`);
      }
      return text();
    },
    waitClosed: (ms = 2000) => wait(() => isClosed, ms),
    destroy: () => socket.destroy(),
  };
}

/** Writes `text` to a fresh temp file (name `name`) and returns its path. */
export function writeTempFile(text: string, name = 'tandem.yaml'): string {
  const file = join(tempDir(), name);
  writeFileSync(file, text);
  return file;
}

/** The built CLI: child-process tests need `npm run build` first. */
export const CLI_PATH = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface TandemProcess {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** the exit code once the process ended and its output was read (null when a signal killed it) */
  readonly exited: Promise<number | null>;
  /** the "tandem ready" log line's ports: listener name -> port, and the admin port */
  ready(ms?: number): Promise<{ listeners: Record<string, number>; admin: number }>;
  /** SIGKILL unless it already ended (afterEach) */
  kill(): void;
}

/** Runs `node dist/cli.js ...args` with the running Node binary. */
export function spawnTandem(args: string[], env: Record<string, string | undefined> = {}): TandemProcess {
  const child = spawn(process.execPath, [CLI_PATH, ...args], {
    env: { ...process.env, TANDEM_CONFIG: undefined, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let ended = false;
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => {
    child.on('close', (code) => {
      ended = true;
      resolve(code);
    });
  });
  const ready = async (ms = 5000): Promise<{ listeners: Record<string, number>; admin: number }> => {
    const deadline = Date.now() + ms;
    for (;;) {
      for (const line of err.split('\n')) {
        if (!line.includes('"tandem ready"')) continue;
        const entry = JSON.parse(line) as { listeners: string; admin: number };
        const listeners: Record<string, number> = {};
        for (const pair of entry.listeners.split(' ')) {
          const [name, port] = pair.split('=');
          listeners[name!] = Number(port);
        }
        return { listeners, admin: entry.admin };
      }
      if (ended || Date.now() > deadline) throw new Error(`tandem not ready (ended=${ended}); stderr: ${err}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    ready,
    kill: () => {
      if (!ended) child.kill('SIGKILL');
    },
  };
}
