// Test certificates made by the openssl CLI: P-256 keys, a CA and the
// certificates it signs, written as NAME.key and NAME.crt into a directory.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A P-256 key and a certificate for it in `dir`, signed by `ca` (self-signed when absent). */
export function makeCert(dir: string, name: string, subject: string, opts: { ca?: string; san?: string; isCa?: boolean } = {}): void {
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  const ext = [
    opts.isCa ? 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign' : 'basicConstraints=CA:FALSE',
    opts.san === undefined ? '' : `subjectAltName=${opts.san}`,
  ].join('\n');
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
  const signer = opts.ca === undefined ? ['-signkey', `${name}.key`] : ['-CA', `${opts.ca}.crt`, '-CAkey', `${opts.ca}.key`, '-CAcreateserial'];
  openssl('x509', '-req', '-in', `${name}.csr`, ...signer, '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
}
