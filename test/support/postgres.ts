/**
 * A private PostgreSQL server for the hub's PostgreSQL store (issue 18): initdb in a temp dir, the
 * `postgres` binary listening on 127.0.0.1 at a free port (and a socket in the temp dir), password
 * authentication (scram-sha-256) so that the tests can check that the hub never prints the
 * password. The Debian package `postgresql` (scripts/setup.mjs --test) provides the binaries in
 * /usr/lib/postgresql/VERSION/bin and a `postgres` system user: PostgreSQL refuses to run as root,
 * so as root the fixture runs initdb and the server as that user (setpriv, which execs, so the pid
 * we signal is the server's own).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './cluster.js';

export interface Postgres {
  /** postgres://mint:PASSWORD@127.0.0.1:PORT/postgres */
  url: string;
  password: string;
  port: number;
  /** Stops the server (fast shutdown) and keeps its data; `start` brings it back on the same port. */
  stop: () => Promise<void>;
  start: () => Promise<void>;
  /** Stops it and removes its data. */
  destroy: () => Promise<void>;
}

function binDir(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, 'bin', 'postgres')) && existsSync(join(base, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(base, versions[0], 'bin');
  }
  const onPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  const found = onPath.status === 0 ? onPath.stdout.trim() : '';
  return found ? join(found, '..') : undefined;
}

const isRoot = process.getuid?.() === 0;

/**
 * Why the PostgreSQL tests cannot run here, or undefined when they can. Only a non-root machine
 * without the binaries skips: as root, scripts/setup.mjs --test installs them, so their absence
 * is a failure, not a skip.
 */
export function postgresMissing(): string | undefined {
  if (binDir()) return undefined;
  if (isRoot) return undefined;
  return 'no PostgreSQL binaries (initdb, postgres) and not root to install them: apt-get install postgresql';
}

export async function startPostgres(): Promise<Postgres> {
  const bin = binDir();
  if (!bin) throw new Error('PostgreSQL binaries not found (run scripts/setup.mjs --test as root: it installs the postgresql package)');
  const dir = await mkdtemp(join(tmpdir(), 'mint-pg-'));
  const data = join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  writeFileSync(join(dir, 'pw'), `${password}\n`, { mode: 0o600 });
  let uid: number | undefined;
  let gid: number | undefined;
  if (isRoot) {
    const id = (flag: string): number => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
    uid = id('-u');
    gid = id('-g');
    if (!Number.isInteger(uid) || uid <= 0) throw new Error('as root the fixture runs PostgreSQL as the `postgres` user, which is missing (apt-get install postgresql)');
    chownSync(dir, uid, gid);
    chownSync(join(dir, 'pw'), uid, gid);
  }
  const asOwner = (cmd: string, args: string[]): [string, string[]] =>
    isRoot ? ['setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--init-groups', '--', cmd, ...args]] : [cmd, args];
  const [initCmd, initArgs] = asOwner(join(bin, 'initdb'), ['-D', data, '-U', 'mint', `--pwfile=${join(dir, 'pw')}`, '--auth=scram-sha-256', '-E', 'UTF8', '--no-sync']);
  const init = spawnSync(initCmd, initArgs, { encoding: 'utf8', cwd: dir });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}${init.stdout}`);
  const port = await freePort();
  let child: ChildProcess | undefined;
  let log = '';

  const start = async (): Promise<void> => {
    const [cmd, args] = asOwner(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'shared_buffers=16MB', '-c', 'max_connections=60']);
    const proc = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`PostgreSQL not ready in 30 s: ${log}`)), 30_000);
      proc.stderr!.on('data', (c: Buffer) => {
        log += c.toString('utf8');
        if (log.includes('database system is ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`PostgreSQL exited ${code}: ${log}`));
      });
    });
    log = '';
  };
  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      // SIGINT: fast shutdown (rolls back open transactions, checkpoints, exits).
      proc.kill('SIGINT');
    });
  };
  await start();
  return {
    url: `postgres://mint:${password}@127.0.0.1:${port}/postgres`,
    password,
    port,
    stop,
    start,
    destroy: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
