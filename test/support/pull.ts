/**
 * Pull mode's real pieces for tests: a hub process and agent processes (the built CLI, dist/), the
 * agent running the real gateway script with a job root and program of its own. Nothing is mocked:
 * HTTPS with a CA from `hub init`, SQLite on disk, rsync through the gateway.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { InlineHost } from '../../src/config/resolve-host.js';

const CLI = resolve(import.meta.dirname, '..', '..', 'bin', 'mint-ssh-exec.mjs');

export function cli(args: string[]): string {
  return execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface Proc {
  child: ChildProcess;
  stderr: () => string;
  stop: () => Promise<void>;
}

function start(args: string[], ready: RegExp): Promise<Proc & { match: RegExpExecArray }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready: ${err}`)), 20_000);
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString('utf8');
      const m = ready.exec(err);
      if (m && timer) {
        clearTimeout(timer);
        resolvePromise({
          child,
          match: m,
          stderr: () => err,
          stop: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGTERM');
            }),
        });
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
}

export interface HubSetup {
  data: string;
  url: string;
  port: number;
  ca: string;
  submitTokenFile: string;
  proc: Proc;
  /** `--store URL` for every hub command, or nothing (SQLite in data). */
  storeArgs: string[];
  /** Starts the hub again on the same port and data (after a stop). */
  restart: () => Promise<void>;
  siteToken: (site: string) => string;
  host: (site: string) => InlineHost;
}

export async function startHub(dir: string, options: { store?: string } = {}): Promise<HubSetup> {
  const data = join(dir, 'hub');
  const storeArgs = options.store ? ['--store', options.store] : [];
  cli(['hub', 'init', '--data', data, ...storeArgs]);
  const first = await start(['hub', '--data', data, '--listen', '127.0.0.1:0', ...storeArgs], /listening on https:\/\/127\.0\.0\.1:(\d+)/);
  const port = Number(first.match[1]);
  const setup: HubSetup = {
    data,
    port,
    url: `https://127.0.0.1:${port}`,
    ca: join(data, 'ca.pem'),
    submitTokenFile: join(data, 'submit.token'),
    proc: first,
    storeArgs,
    restart: async () => {
      setup.proc = await start(['hub', '--data', data, '--listen', `127.0.0.1:${port}`, ...storeArgs], /listening on/);
    },
    siteToken: (site) => {
      const token = cli(['hub', 'add-site', site, '--data', data, ...storeArgs]).trim();
      const file = join(dir, `${site}.token`);
      writeFileSync(file, `${token}\n`, { mode: 0o600 });
      return file;
    },
    host: (site) => ({ name: `pull-${site}`, mode: 'pull', hub: setup.url, site, hubTokenFile: setup.submitTokenFile, hubCa: setup.ca }),
  };
  return setup;
}

/**
 * Another hub process over the same store and data dir (a replica: PostgreSQL store), on a port
 * of its own; the returned setup differs from `hub` only in its url, port and process.
 */
export async function startReplica(hub: HubSetup): Promise<HubSetup> {
  const proc = await start(['hub', '--data', hub.data, '--listen', '127.0.0.1:0', ...hub.storeArgs], /listening on https:\/\/127\.0\.0\.1:(\d+)/);
  const port = Number(proc.match[1]);
  const url = `https://127.0.0.1:${port}`;
  const replica: HubSetup = {
    ...hub,
    port,
    url,
    proc,
    restart: async () => {
      replica.proc = await start(['hub', '--data', hub.data, '--listen', `127.0.0.1:${port}`, ...hub.storeArgs], /listening on/);
    },
    host: (site) => ({ ...hub.host(site), hub: url }),
  };
  return replica;
}

/** The site's program: prints its args, copies input.dat to output.dat, writes a result, exits with $1. */
export const PROGRAM = `#!/bin/sh
echo "program: args=$*"
[ -f input.dat ] && cp input.dat output.dat
echo "done" > result.txt
[ -n "$SLEEP" ] && sleep "$SLEEP"
echo "program: end"
exit "\${1:-0}"
`;

export async function startAgent(dir: string, hub: HubSetup, site: string, tokenFile: string, extra: string[] = [], programText = PROGRAM): Promise<Proc & { root: string }> {
  const root = join(dir, `root-${site}`);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  chmodSync(root, 0o700);
  const program = join(dir, `program-${site}.sh`);
  writeFileSync(program, programText, { mode: 0o755 });
  const proc = await start(
    ['agent', '--hub', hub.url, '--site', site, '--token-file', tokenFile, '--ca', hub.ca, '--root', root, '--program', program, '--allow-env', 'SLEEP', ...extra],
    /polling/,
  );
  return { ...proc, root };
}
