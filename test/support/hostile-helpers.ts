/**
 * Helpers for the hostile-input suites (test/gateway/hostile*.test.ts): raw commands through the real
 * sshd + gateway (ssh2 and the OpenSSH clients), a bounded number of channels per connection, the
 * gateway's refusal format, tree snapshots for "nothing changed" checks, the audit log, and a
 * rsync --rsh wrapper that ignores what rsync asks for and runs one fixed gateway verb instead.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, readFile, readdir, readlink, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClientChannel } from 'ssh2';
import { resolveHost } from '../../src/config/resolve-host.js';
import type { ResolvedHost } from '../../src/config/resolved-host.js';
import { connect, type Connection } from '../../src/connection/connect.js';
import { collect, type ExecResult } from '../../src/connection/exec.js';
import type { Sandbox } from '../../src/sandbox/sandbox.js';
/** The gateway's refusal codes and exit statuses (the header of src/assets/mint-gateway.sh). */
export const EXIT = {
  E_USAGE: 64,
  E_NOCOMMAND: 65,
  E_SUBSYSTEM: 66,
  E_NOJOB: 67,
  E_STATE: 68,
  E_LIMIT: 69,
  E_INTERNAL: 70,
  E_SCOPE: 73,
  E_CONFIG: 78,
} as const;
export type ErrorName = keyof typeof EXIT;

/** The byte allow-list message, so table rows can name the layer that must refuse them. */
export const MSG_BYTES = 'command holds a byte outside [A-Za-z0-9 ._,:=+@%-]';
export const MSG_SPACES = 'tokens must be separated by exactly one space';
export const MSG_JOB = 'job id must be a lowercase UUID';
export const MSG_CAPS = 'rsync capabilities must look like .iLsfxCIvu';

export interface GatewaySession {
  connection: Connection;
  /** Runs one exec request with stdin closed; the command may be raw bytes. At most `limit` channels are open at once. */
  run: (command: string | Buffer, options?: { env?: Record<string, string> }) => Promise<ExecResult>;
  /** A shell request (no command, no pty). */
  shell: () => Promise<ExecResult>;
  /** A subsystem request. */
  subsystem: (name: string) => Promise<ExecResult>;
  close: () => void;
}

/** One ssh2 connection to the sandbox with a small channel limit (sshd allows MaxSessions 10). */
export async function openGateway(sandbox: Sandbox, limit = 4, host?: ResolvedHost): Promise<GatewaySession> {
  const connection = await connect(host ?? (await resolveHost(sandbox.host)));
  let active = 0;
  const waiting: Array<() => void> = [];
  const slot = async <T>(work: () => Promise<T>): Promise<T> => {
    if (active >= limit) await new Promise<void>((r) => waiting.push(r));
    active += 1;
    try {
      return await work();
    } finally {
      active -= 1;
      waiting.shift()?.();
    }
  };
  const channel = (open: (cb: (error: Error | undefined, channel: ClientChannel) => void) => void): Promise<ExecResult> =>
    slot(
      () =>
        new Promise<ExecResult>((resolve, reject) => {
          open((error, ch) => {
            if (error) return reject(error);
            // EOF on stdin at once: a request the gateway wrongly accepted as put/get then ends
            // (rsync sees no protocol) instead of hanging until the test times out.
            ch.end();
            resolve(collect(connection, ch));
          });
        }),
    );
  return {
    connection,
    // ssh2 sends a Buffer command byte for byte, which is how non-UTF-8 bytes reach sshd.
    run: (command, options = {}) =>
      channel((cb) => connection.client.exec(command as string, options.env ? { env: options.env } : {}, cb)),
    shell: () => channel((cb) => connection.client.shell(false, cb)),
    subsystem: (name) => channel((cb) => connection.client.subsys(name, cb)),
    close: () => connection.close(),
  };
}

/**
 * stderr without what the account's login shell printed before the gateway ran. Here that shell is
 * bash, which sshd makes read ~/.bashrc; its `pyenv init` rehashes under a global lock and, when many
 * sessions start at once, may print `pyenv: cannot rehash ...` (and an `rm:` of its own temp file in
 * ~/.pyenv). Only those lines are dropped; anything else stays and must match exactly.
 */
export function gatewayStderr(stderr: string): string {
  return stderr
    .split(/(?<=\n)/)
    .filter((line) => !/^pyenv: |^rm: cannot remove '[^']*\/\.pyenv\/|cannot overwrite existing file/.test(line))
    .join('');
}

/** The exact one-line refusal the gateway prints: `mint-gw: error: E_CODE: message`. */
export function refusalLine(code: ErrorName, message: string): string {
  return `mint-gw: error: ${code}: ${message}\n`;
}

/** Expected refusals, counted per code, to compare with the audit log at the end. */
export class RefusalTally {
  private readonly counts = new Map<string, number>();
  add(code: ErrorName): void {
    this.counts.set(code, (this.counts.get(code) ?? 0) + 1);
  }
  get(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort());
  }
  total(): number {
    return [...this.counts.values()].reduce((a, b) => a + b, 0);
  }
}

export interface AuditLine {
  raw: string;
  /** The request's id: its acceptance and its outcome line share it. */
  req: string;
  verb: string;
  /** `accepted`, `already-started` or `refused:E_CODE`; '' on an outcome line. */
  decision: string;
  /** `ok`, `failed`, `error:E_CODE`, `signal:NAME` or (the program's line) `cancelled`; '' on a decision line. */
  outcome: string;
  /** NaN where the line has none (an acceptance, or `exit=-`). */
  exit: number;
}

/** The gateway's audit log, one entry per line (the format is in mint-gateway.sh's audit section). */
export async function readAudit(root: string): Promise<AuditLine[]> {
  const text = await readFile(join(root, '.mint-gateway-audit.log'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((raw) => {
      const field = (name: string): string => new RegExp(` ${name}=(\\S+)`).exec(raw)?.[1] ?? '';
      return { raw, req: field('req'), verb: field('verb'), decision: field('decision'), outcome: field('outcome'), exit: Number(field('exit') || NaN) };
    });
}

/** The gateway's errors as the audit records them, counted per E_ code: refusals before acceptance and errors after it. */
export function countRefusals(lines: AuditLine[]): Record<string, number> {
  const counts = new Map<string, number>();
  for (const line of lines) {
    const m = /^(?:refused|error):(E_[A-Z]+)$/.exec(line.decision || line.outcome);
    if (m) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
  }
  return Object.fromEntries([...counts.entries()].sort());
}

export interface NodeInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mtimeMs: number;
  mode: number;
  link?: string;
}

/**
 * Every path under `dir` (relative, '' for dir itself) with type, size, mtime and mode; symlinks are
 * not followed. `skip` leaves a path and everything below it out; `typeOnly` keeps a path and its
 * children but records only its type (for a directory whose mtime is expected to move).
 */
export async function snapshotTree(
  dir: string,
  skip: (rel: string) => boolean = () => false,
  typeOnly: (rel: string) => boolean = () => false,
): Promise<Map<string, NodeInfo>> {
  const out = new Map<string, NodeInfo>();
  const walk = async (rel: string): Promise<void> => {
    if (skip(rel)) return;
    const abs = rel ? join(dir, rel) : dir;
    let st;
    try {
      st = await lstat(abs);
    } catch {
      return; // vanished between readdir and lstat
    }
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    const info: NodeInfo = typeOnly(rel) ? { type, size: 0, mtimeMs: 0, mode: 0 } : { type, size: st.size, mtimeMs: st.mtimeMs, mode: st.mode };
    if (type === 'symlink') info.link = await readlink(abs);
    out.set(rel, info);
    if (type === 'dir') {
      for (const name of (await readdir(abs)).sort()) await walk(rel ? `${rel}/${name}` : name);
    }
  };
  await walk('');
  return out;
}

/** Human-readable differences between two snapshots (empty when identical). */
export function diffTrees(before: Map<string, NodeInfo>, after: Map<string, NodeInfo>): string[] {
  const changes: string[] = [];
  for (const [path, a] of after) {
    const b = before.get(path);
    if (!b) changes.push(`created ${path || '.'} (${a.type})`);
    else if (b.type !== a.type || b.size !== a.size || b.mtimeMs !== a.mtimeMs || b.mode !== a.mode || b.link !== a.link) {
      changes.push(`changed ${path || '.'}: ${JSON.stringify(b)} -> ${JSON.stringify(a)}`);
    }
  }
  for (const path of before.keys()) if (!after.has(path)) changes.push(`removed ${path || '.'}`);
  return changes;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when the deadline ran out and the process group was killed. */
  timedOut: boolean;
}

/**
 * Runs a local program (ssh, sftp, scp, rsync) in its own process group with a hard deadline. The
 * default deadline is long because on this machine an SSH session's login shell can wait up to 60 s
 * for pyenv's rehash lock when many sessions start at once.
 */
export function runCli(
  file: string,
  args: readonly string[],
  options: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: options.env ?? process.env, cwd: options.cwd, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, options.timeoutMs ?? 90_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    // The exit status counts, not the stdio: a helper left behind (rsync's ssh) must not hold the
    // result up, so once the program has exited its group gets a moment to finish and is then killed.
    let exitCode: number | null = null;
    let exitSignal: NodeJS.Signals | null = null;
    child.on('exit', (code, signal) => {
      exitCode = code;
      exitSignal = signal;
      setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 2000).unref();
    });
    child.on('close', () => {
      clearTimeout(timer);
      resolve({ code: exitCode, signal: exitSignal, stdout, stderr, timedOut });
    });
  });
}

/** OpenSSH client options that reach the sandbox with its key and nothing from ~/.ssh. */
export function sshOptions(sandbox: Sandbox): string[] {
  return [
    '-F',
    '/dev/null',
    '-i',
    sandbox.clientKey,
    '-o',
    `UserKnownHostsFile=${sandbox.knownHosts}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'IdentityAgent=none',
    '-o',
    'LogLevel=ERROR',
  ];
}

export function sshCli(sandbox: Sandbox, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return runCli('ssh', [...sshOptions(sandbox), '-p', String(sandbox.port), ...args], options);
}

/**
 * Writes an rsync --rsh wrapper for this sandbox. rsync runs it as `WRAPPER [-l USER] HOST rsync
 * --server ...`; the wrapper appends that argv (one line) to $MGW_ARGV_LOG, ignores it, takes only
 * the capability string from rsync's flags (the one thing the real client forwards too) and runs
 * `mint-gw $MGW_VERB $MGW_JOB CAPS` through OpenSSH, so the gateway's fixed server template is used.
 */
export async function writeRshWrapper(sandbox: Sandbox, dir: string): Promise<string> {
  const path = join(dir, 'hostile-rsh.sh');
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const ssh = ['ssh', ...sshOptions(sandbox), '-p', String(sandbox.port), `${sandbox.user}@127.0.0.1`].map(q).join(' ');
  await writeFile(
    path,
    `#!/bin/sh
# rsync --rsh wrapper for the hostile rsync tests: ignores rsync's remote command.
[ -z "$MGW_ARGV_LOG" ] || printf '%s\\n' "$*" >>"$MGW_ARGV_LOG"
caps=.iLsfxCIvu
for a in "$@"; do
  case $a in
    --*) ;;
    -*e*.*) c=\${a#*e}; case $c in [0-9]*.* | .*) caps=$c ;; esac ;;
  esac
done
# A download is rsync's daemon mode (the client names h::work/): no caps on the command line.
case $MGW_VERB in get | take) exec ${ssh} "mint-gw $MGW_VERB $MGW_JOB" ;; esac
exec ${ssh} "mint-gw $MGW_VERB $MGW_JOB $caps"
`,
  );
  await chmod(path, 0o755);
  return path;
}

/**
 * Writes an rsync --rsh program (Node) for `take`: it runs `mint-gw take $MGW_JOB CAPS` through
 * OpenSSH, relays rsync's streams, and when the gateway prints its `sent` line writes $MGW_ANSWER
 * (any bytes, JSON-encoded in the environment) as the answer instead of the client's `remove\n`.
 * The gateway's stderr is appended to $MGW_STDERR_LOG.
 */
export async function writeAnsweringRsh(sandbox: Sandbox, dir: string): Promise<string> {
  const path = join(dir, 'answering-rsh.mjs');
  const ssh = ['ssh', ...sshOptions(sandbox), '-p', String(sandbox.port), `${sandbox.user}@127.0.0.1`];
  await writeFile(
    path,
    `#!${process.execPath}
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
// rsync's daemon mode (the client names h::work/): take carries no caps.
const argv = ${JSON.stringify(ssh)};
const child = spawn(argv[0], [...argv.slice(1), \`mint-gw take \${process.env.MGW_JOB}\`], { stdio: ['pipe', 'pipe', 'pipe'] });
process.stdin.pipe(child.stdin, { end: false });
child.stdout.pipe(process.stdout);
let err = '';
let answered = false;
child.stderr.on('data', (chunk) => {
  err += chunk.toString('latin1');
  if (!answered && /^mint-gw: sent: /m.test(err)) {
    answered = true;
    process.stdin.unpipe(child.stdin);
    child.stdin.end(Buffer.from(JSON.parse(process.env.MGW_ANSWER), 'latin1'));
    process.stdout.end();
  }
});
child.on('close', (code) => {
  appendFileSync(process.env.MGW_STDERR_LOG, err);
  process.exit(code ?? 255);
});
`,
  );
  await chmod(path, 0o755);
  return path;
}

/**
 * The rsyncs a gateway's downloads are tested with, besides this machine's: `hidden` is this
 * machine's rsync behind a wrapper (the site's --rsync, which only authorized_keys sets, never a
 * client) that leaves --confine-root out of --help and refuses it, as rsync < 3.5.0 would; then
 * rsync 3.1.3 (RHEL 8) and 3.2.3 (RHEL 9) when they are installed under /opt (built from
 * RsyncProject/rsync's tags: configure --prefix=/opt/rsync-3.x.y --disable-openssl --disable-xxhash
 * --disable-zstd --disable-lz4 --disable-md2man).
 */
export const GATEWAY_RSYNCS: readonly [label: string, which: string | undefined][] = [
  ["this machine's rsync", undefined],
  ['hidden --confine-root', 'hidden'],
  ...['/opt/rsync-3.1.3/bin/rsync', '/opt/rsync-3.2.3/bin/rsync'].filter((p) => existsSync(p)).map((p): [string, string] => [p, p]),
];

/** The --rsync path for a GATEWAY_RSYNCS entry (writing the `hidden` wrapper into `dir`). */
export async function gatewayRsync(which: string, dir: string): Promise<string> {
  if (which !== 'hidden') return which;
  const path = join(dir, 'hidden-confine-root-rsync');
  await writeFile(
    path,
    '#!/bin/sh\n# The real rsync without --confine-root (as rsync < 3.5.0): not in --help, refused if given.\n' +
      'for a in "$@"; do case $a in --confine-root*) echo "rsync: $a: unknown option" >&2; exit 1 ;; esac; done\n' +
      'if [ "$1" = --help ]; then /usr/bin/rsync --help | grep -v -e --confine-root; exit 0; fi\nexec /usr/bin/rsync "$@"\n',
  );
  await chmod(path, 0o755);
  return path;
}
