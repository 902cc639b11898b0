/**
 * The local rsync binary, its remote shell being our shim, so rsync's delta algorithm and file
 * handling are the real thing and the bytes travel on the job's one SSH connection. No -z: MInt's
 * inputs are mostly binary and the link is rarely the bottleneck. What runs on the other side, and
 * what its answers mean, is the gateway client's business (gateway/client.ts).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync, realpathSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { NODE_SHIM, PERL_SHIM } from '../assets/index.js';
import { RSYNC_CLIENT_OPTIONS, checkServerArgs, type Direction } from './rsync-args.js';
import type { RshBridge } from './rsh-bridge.js';

// The shims: src/assets/ (the package ships them as they are).

export interface TransferProgress {
  direction: Direction;
  bytes: number;
  percent: number;
  /** rsync's own text, e.g. `3.21MB/s` (its MB are MiB). */
  rate: string;
  /** The same rate in bytes per second; undefined when rsync's text could not be read. */
  bytesPerSecond: number | undefined;
}

/**
 * rsync's --info=progress2 rate (`503.16kB/s`, `3.21MB/s`, `1.50GB/s`) in bytes per second. rsync
 * divides by 1024 at each step (progress.c), so its kB/MB/GB are KiB/MiB/GiB: with --bwlimit=500
 * (KiB/s) it shows about 503kB/s, not 512.
 */
export function parseRate(rate: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([kMGT]?)B\/s$/.exec(rate);
  if (!m) return undefined;
  return Number(m[1]) * 1024 ** ' kMGT'.indexOf(m[2] || ' ');
}

export interface RsyncRun {
  direction: Direction;
  /** rsync's source and destination; `mint:` names the remote side, which the bridge reaches. */
  paths: string[];
  bridge: RshBridge;
  /** The remote command for the capability string rsync asks the server with. */
  remoteCommand: (caps: string) => string;
  /**
   * For a channel that outlives rsync (see RouteFn): recognises its end in the remote stderr, and
   * `reply` gives what to answer once the local rsync has exited (cleanly or not).
   */
  endsOn?: (stderrLine: string) => number | undefined;
  /** May check what landed first (take's manifest check): the answer waits for it. */
  reply?: (localOk: boolean) => string | undefined | Promise<string | undefined>;
  /** Remote stderr lines taken by the caller (true), kept out of rsync's stderr and `remote.stderr`. */
  consume?: (stderrLine: string) => boolean;
  signal?: AbortSignal;
  onProgress?: (progress: TransferProgress) => void;
  /** Each file rsync wrote, as it is written (also for an attempt that fails later). */
  onFile?: (path: string) => void;
  rsyncPath?: string;
}

/** What one rsync run did, locally and on the relayed channel; the caller judges it. */
export interface RsyncOutcome {
  /** Paths (relative to the destination): for a download every file of it, sent or already there unchanged; for an upload those sent. */
  files: string[];
  /** Symlinks not made because they point outside the tree: `path -> target`. */
  skipped: string[];
  durationMs: number;
  failed: boolean;
  cancelled: boolean;
  /** The local rsync binary is not installed. */
  missing: boolean;
  exitCode: number | undefined;
  stderr: string;
  remote: { exitCode: number | undefined; stderr: string; refused: string | undefined };
}

export type ShimKind = 'perl' | 'node';

let perlWorks: boolean | undefined;

/**
 * The remote-shell shim: Perl when it is there (it starts in ~5 ms where Node takes ~70 ms, and
 * rsync starts it twice per job), else Node. MINT_SSH_EXEC_SHIM=node|perl forces one.
 */
export function shimKind(env: NodeJS.ProcessEnv = process.env): ShimKind {
  if (env.MINT_SSH_EXEC_SHIM === 'node' || env.MINT_SSH_EXEC_SHIM === 'perl') return env.MINT_SSH_EXEC_SHIM;
  perlWorks ??= spawnSync('/usr/bin/perl', ['-MFcntl', '-MErrno', '-e', '1'], { stdio: 'ignore' }).status === 0;
  return perlWorks ? 'perl' : 'node';
}

/** rsync splits --rsh on spaces but honours quotes. */
function rshCommand(): string {
  const quote = (s: string): string => (/^[A-Za-z0-9_./:=+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return shimKind() === 'perl' ? `/usr/bin/perl ${quote(PERL_SHIM)}` : `${quote(process.execPath)} ${quote(NODE_SHIM)}`;
}

/** Checks the inputs exist and do not collide by name: rsync would silently merge same-named files. */
export async function checkInputs(inputs: readonly string[], context: { host: string; jobId?: string }): Promise<string[]> {
  const seen = new Map<string, string>();
  const resolved: string[] = [];
  for (const input of inputs) {
    const path = resolve(input).replace(/\/+$/, '') || '/';
    let info;
    try {
      info = await stat(path); // follows symlinks, as rsync -L will
    } catch {
      throw new InputError(`input ${JSON.stringify(input)} does not exist (or is a dangling symlink)`, context);
    }
    if (!info.isFile() && !info.isDirectory()) throw new InputError(`input ${JSON.stringify(input)} is neither a file nor a directory`, context);
    const unreadable = findUnreadable(path, info.isDirectory());
    if (unreadable.length > 0) {
      throw new InputError(`input ${JSON.stringify(input)} cannot be sent whole: ${unreadable.join('; ')}`, {
        ...context,
        hint: 'make these readable by this account, or leave them out; nothing was sent',
      });
    }
    const name = basename(path);
    const other = seen.get(name);
    if (other !== undefined) throw new InputError(`inputs ${JSON.stringify(other)} and ${JSON.stringify(input)} would both arrive as ${JSON.stringify(name)}`, context);
    seen.set(name, input);
    resolved.push(path);
  }
  return resolved;
}

/**
 * What rsync -L could not send whole in an input: unreadable files, unlistable directories,
 * symlinks without a referent or looping back up the tree (the first few, with why). Found only by the upload, it used to fail as
 * TRANSFER_FAILED (rsync code 23) after part of the inputs had left, leaving a job behind. The walk
 * follows symlinks as -L does; specials (fifos, sockets) are skipped by rsync, and so here.
 */
function findUnreadable(path: string, isDirectory: boolean, limit = 5): string[] {
  // Synchronous on purpose: one syscall each, where the promise API's thread-pool round trip made
  // 10,000 files cost 300-700 ms; synchronous, 24-33 ms on this machine.
  const found: string[] = [];
  const why = (error: unknown): string => (error as NodeJS.ErrnoException).code ?? String(error);
  // `ancestors`: the real paths of the directories above, to stop at a symlink back up the tree.
  const visit = (entry: string, directory: boolean, ancestors: readonly string[]): void => {
    if (found.length >= limit) return;
    if (!directory) {
      try {
        accessSync(entry, constants.R_OK);
      } catch (error) {
        found.push(`${entry} (${why(error)})`);
      }
      return;
    }
    let children;
    try {
      children = readdirSync(entry, { withFileTypes: true });
    } catch (error) {
      found.push(`${entry}/ (${why(error)})`);
      return;
    }
    for (const child of children) {
      if (found.length >= limit) break;
      const childPath = join(entry, child.name);
      let info;
      try {
        info = child.isSymbolicLink() ? statSync(childPath) : child;
      } catch (error) {
        found.push(`${childPath} (${why(error) === 'ENOENT' ? 'a symlink without a referent' : why(error)})`);
        continue;
      }
      if (info.isDirectory()) {
        // A symlink back up the tree: rsync -L copies it again at every level until ELOOP (40 deep
        // here, rsync 3.5.0), then fails with code 23 after the upload began.
        const real = child.isSymbolicLink() ? realpathOr(childPath) : join(ancestors.at(-1) ?? entry, child.name);
        if (ancestors.includes(real)) found.push(`${childPath} (a symlink back up to ${real}: rsync -L would copy it over and over)`);
        else visit(childPath, true, [...ancestors, real]);
      } else if (info.isFile()) {
        visit(childPath, false, ancestors);
      }
    }
  };
  visit(path, isDirectory, [realpathOr(path)]);
  return found;
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * What rsync prints per file. A download names every file of the output, with its itemize string,
 * because `--info=name2` (in its client options) adds the unchanged ones: with `%n` alone rsync names
 * only what it transferred, and a re-run into the same output dir left unchanged files out of
 * result.files (name2 then prints `NAME is uptodate`, which a file of that name makes ambiguous;
 * with `%i` the line is an itemize string and the name, whatever the name). An upload keeps `%n`:
 * `%i` would change the server's `--log-format=X`, which the gateway's template pins.
 */
const OUT_FORMAT: Record<Direction, string> = { put: '%n', get: '%i %n' };

/** Runs the local rsync with the bridge as its remote shell; never throws for rsync's own failures. */
export async function runRsync(run: RsyncRun): Promise<RsyncOutcome> {
  const started = performance.now();
  const { direction } = run;
  const session = await run.bridge.session((argv) => {
    const check = checkServerArgs(argv, direction);
    if (!check.ok) return { error: check.reason };
    return { command: run.remoteCommand(check.caps), ...(run.endsOn ? { endsOn: run.endsOn } : {}), ...(run.consume ? { consume: run.consume } : {}) };
  });
  const files: string[] = [];
  const skipped: string[] = [];
  // Loaded here, not at the import: a small job's files go inline and start no rsync, and execa
  // and its dependencies were ~10 ms of every fresh process's import (perf-findings.md, section 2).
  const { execa } = await import('execa');
  try {
    const child = execa(
      run.rsyncPath ?? 'rsync',
      [...RSYNC_CLIENT_OPTIONS[direction], '-8', `--out-format=${OUT_FORMAT[direction]}`, '--info=progress2', `--rsh=${rshCommand()}`, '--', ...run.paths],
      {
        env: { ...session.env, RSYNC_PROTECT_ARGS: undefined, RSYNC_OLD_ARGS: undefined, RSYNC_RSH: undefined },
        reject: false,
        all: false,
        // fd 3 (SHIM_FD): the shim's end of the bridge, which it inherits through rsync.
        stdio: ['ignore', 'pipe', 'pipe', session.shimEnd],
        ...(run.signal ? { cancelSignal: run.signal } : {}),
        maxBuffer: 64 * 1024 * 1024,
        lines: false,
        buffer: { stdout: false, stderr: true },
      },
    );
    let carry = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      const parts = (carry + chunk).split(/[\r\n]/);
      carry = parts.pop() ?? '';
      for (const line of parts) parseLine(line);
    });
    const parseLine = (line: string): void => {
      const progress = /^\s*([\d,]+)\s+(\d+)%\s+(\S+)/.exec(line);
      if (progress) {
        run.onProgress?.({ direction, bytes: Number(progress[1]!.replace(/,/g, '')), percent: Number(progress[2]), rate: progress[3]!, bytesPerSecond: parseRate(progress[3]!) });
        return;
      }
      // --safe-links with --info=name: a symlink the receiver would not make; the other lines that
      // level adds are no file names.
      const unsafe = /^ignoring unsafe symlink "(.*)" -> "(.*)"$/.exec(line);
      if (unsafe) {
        skipped.push(`${unsafe[1]} -> ${unsafe[2]}`);
        return;
      }
      if (/^(created directory |skipping non-regular file )/.test(line)) return;
      if (direction === 'get') {
        // Every item, changed or not: `>f+++++++++ a.dat` (sent), `.f          a.dat` (already here).
        const item = /^[<>ch.*]([fdLDS]).{9} (.+)$/.exec(line);
        if (item && item[1] !== 'd') {
          files.push(item[2]!);
          run.onFile?.(item[2]!);
        }
        return;
      }
      if (line && !line.endsWith('/') && line.trim() === line) {
        files.push(line);
        run.onFile?.(line);
      }
    };
    const result = await child;
    if (carry) parseLine(carry);
    if (run.endsOn) await session.answer(await run.reply?.(!result.failed && result.exitCode === 0));
    return {
      files,
      skipped,
      durationMs: performance.now() - started,
      failed: result.failed,
      cancelled: result.isCanceled,
      missing: result.exitCode === undefined && result.code === 'ENOENT',
      exitCode: result.exitCode,
      stderr: String(result.stderr ?? ''),
      remote: session.remote(),
    };
  } finally {
    session.close();
  }
}
