// TLS termination of a listener: the server options from the configured PEM
// files, and their re-reading when the files change (certificate rotation by
// cert-manager or a mounted Secret) without dropping a connection.

import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type https from 'node:https';
import tls from 'node:tls';
import type { ListenerTlsConfig } from '../config/types.js';
import { log } from '../observability/log.js';

/** Several files change in one rotation: wait for the writes to settle before re-reading. */
const REREAD_DELAY_MS = 50;

type TlsFiles = Pick<tls.SecureContextOptions, 'cert' | 'key' | 'ca'>;

/** Reads the PEM files; throws naming the file that could not be read. */
export function readTlsFiles(cfg: ListenerTlsConfig): TlsFiles {
  return {
    cert: readPem(cfg.certFile),
    key: readPem(cfg.keyFile),
    ...(cfg.caFile === undefined ? {} : { ca: readPem(cfg.caFile) }),
  };
}

function readPem(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`cannot read TLS file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The https server options of a listener: its files, TLS 1.2 or later, client certificates when a CA is set. */
export function serverTlsOptions(cfg: ListenerTlsConfig): https.ServerOptions {
  const mtls = cfg.caFile !== undefined;
  return {
    ...readTlsFiles(cfg),
    minVersion: 'TLSv1.2',
    requestCert: mtls,
    rejectUnauthorized: mtls && cfg.requireClientCert,
  };
}

/**
 * Watches the directories of the listener's files (a Kubernetes Secret
 * rotates by swapping a symlink, so the files' own watches would go stale)
 * and swaps the server's secure context on a change; open connections keep
 * theirs. A failed re-read (a half-written pair, a bad key) keeps the old
 * context. Returns the function that stops watching.
 */
export function watchTlsFiles(server: https.Server, listenerName: string, cfg: ListenerTlsConfig): () => void {
  const files = [cfg.certFile, cfg.keyFile, ...(cfg.caFile === undefined ? [] : [cfg.caFile])];
  const names = new Set(files.map((f) => basename(f)));
  let timer: NodeJS.Timeout | undefined;
  const reread = (): void => {
    timer = undefined;
    try {
      const next = readTlsFiles(cfg);
      // Fails on a key that does not match its certificate, before the server's context is touched.
      tls.createSecureContext(next);
      server.setSecureContext(next);
      log.info({ listener: listenerName }, 'TLS certificates reloaded');
    } catch (err) {
      log.error({ listener: listenerName, err: (err as Error).message }, 'TLS certificates not reloaded; keeping the previous ones');
    }
  };
  const onChange = (_event: string, file: string | Buffer | null): void => {
    // Kubernetes' atomic writer renames `..data`, not the files themselves.
    if (file !== null && !names.has(String(file)) && !String(file).startsWith('..')) return;
    clearTimeout(timer);
    timer = setTimeout(reread, REREAD_DELAY_MS);
  };
  const watchers: FSWatcher[] = [...new Set(files.map((f) => dirname(f)))].map((dir) =>
    watch(dir, { persistent: false }, onChange).on('error', (err) =>
      log.error({ listener: listenerName, dir, err: err.message }, 'cannot watch TLS files'),
    ),
  );
  return () => {
    clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}
