// Tells when the configuration file may have changed. Kubernetes updates a
// mounted ConfigMap by atomically renaming a `..data` symlink inside the
// mount directory: the file's own inode never changes, so watching the file
// misses it. The directory sees every such rename, as well as an editor's
// write-then-rename and a plain write in place.

import { watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { log } from '../observability/log.js';

/** How long the directory must stay quiet before a change is read (CONTRACT §5). */
export const QUIET_MS = 250;

export interface ConfigWatcher {
  close(): void;
}

/**
 * Calls `onSettled` once the directory holding `file` has had no event for
 * `quietMs`: a file written in pieces is reported once, when complete. What
 * changed is for the caller to find out (events in that directory may
 * concern other files).
 */
export function watchConfigDirectory(file: string, onSettled: () => void, quietMs = QUIET_MS): ConfigWatcher {
  const dir = dirname(resolve(file));
  let timer: NodeJS.Timeout | undefined;
  // Not persistent: the watcher alone must never keep the process alive.
  const watcher: FSWatcher = watch(dir, { persistent: false }, () => {
    clearTimeout(timer);
    timer = setTimeout(onSettled, quietMs);
    timer.unref();
  });
  watcher.on('error', (err) => log.warn({ dir, error: err.message }, 'configuration watch failed; SIGHUP and POST /reload still reload'));
  return {
    close: () => {
      clearTimeout(timer);
      watcher.close();
    },
  };
}
