/**
 * `hub init`: a private CA and a server certificate for small sites and tests, made with the
 * openssl CLI (node:crypto makes keys but not X.509 certificates), and the first submit token.
 * Sites with a real certificate give its paths to `hub --cert/--key` instead.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError } from '../errors.js';
import { openStore } from './open-store.js';
import type { HubStore, StoreSpec } from './store.js';

const run = promisify(execFile);

export interface InitResult {
  ca: string;
  cert: string;
  key: string;
  submitTokenFile: string;
  submitToken: string;
}

/**
 * Names the server certificate is valid for: localhost and 127.0.0.1 always, plus `names`. The
 * submit token goes into `store` (default SQLite in `data`).
 */
export async function initHub(data: string, names: readonly string[] = [], store: StoreSpec = { kind: 'sqlite' }): Promise<InitResult> {
  await mkdir(data, { recursive: true, mode: 0o700 });
  await chmod(data, 0o700);
  if (existsSync(join(data, 'server.pem'))) throw new ConfigError(`${data} already holds a hub (server.pem); remove it first to start again`);
  // The store first: one that cannot be reached fails init before any certificate is made.
  const db = await openStore(data, store, false);
  try {
    return await makeHub(data, names, db);
  } finally {
    await db.close();
  }
}

async function makeHub(data: string, names: readonly string[], db: HubStore): Promise<InitResult> {
  const ca = join(data, 'ca.pem');
  const caKey = join(data, 'ca.key');
  const cert = join(data, 'server.pem');
  const key = join(data, 'server.key');
  const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const openssl = async (args: string[]): Promise<void> => {
    try {
      await run('openssl', args, { timeout: 30_000 });
    } catch (error) {
      throw new ConfigError(`openssl ${args[0]} failed: ${(error as { stderr?: string }).stderr?.trim() || (error as Error).message}`, { hint: 'hub init needs the openssl CLI; or give hub --cert/--key of your own' });
    }
  };
  await openssl(['req', '-x509', ...curve, '-keyout', caKey, '-out', ca, '-days', '3650', '-subj', '/CN=mint-ssh-exec hub CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const csr = join(data, 'server.csr');
  await openssl(['req', ...curve, '-keyout', key, '-out', csr, '-subj', `/CN=${names[0] ?? 'localhost'}`]);
  const alt = ['DNS:localhost', 'IP:127.0.0.1', ...names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`))];
  const ext = join(data, 'server.ext');
  await writeFile(ext, `subjectAltName=${[...new Set(alt)].join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '825', '-extfile', ext]);
  for (const file of [caKey, key]) await chmod(file, 0o600);
  const submitToken = await db.addPrincipal('submitter', 'mint');
  const submitTokenFile = join(data, 'submit.token');
  await writeFile(submitTokenFile, `${submitToken}\n`, { mode: 0o600 });
  return { ca, cert, key, submitTokenFile, submitToken };
}
