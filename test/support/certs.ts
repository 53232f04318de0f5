// Certificates for TLS tests, made by the openssl CLI in a temp directory.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './harness.js';

export interface CertDir {
  readonly dir: string;
  /** A P-256 key and a certificate for it (NAME.key, NAME.crt), signed by `ca` (self-signed when absent). */
  make(name: string, subject: string, opts?: { ca?: string; san?: string; isCa?: boolean }): void;
  /** a file's path in the directory */
  file(name: string): string;
  /** a file's contents */
  pem(name: string): Buffer;
}

export function certDir(prefix = 'tandem-tls-'): CertDir {
  const dir = tempDir(prefix);
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const file = (name: string): string => join(dir, name);
  return {
    dir,
    file,
    pem: (name) => readFileSync(file(name)),
    make(name, subject, opts = {}) {
      const ext = [
        opts.isCa ? 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign' : 'basicConstraints=CA:FALSE',
        opts.san === undefined ? '' : `subjectAltName=${opts.san}`,
      ].join('\n');
      writeFileSync(file(`${name}.ext`), ext);
      openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
      const signer = opts.ca === undefined ? ['-signkey', `${name}.key`] : ['-CA', `${opts.ca}.crt`, '-CAkey', `${opts.ca}.key`, '-CAcreateserial'];
      openssl('x509', '-req', '-in', `${name}.csr`, ...signer, '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
    },
  };
}
