/**
 * Uploads and downloads with the local rsync binary, its remote shell being our shim, so rsync's
 * delta algorithm and file handling are the real thing and the bytes travel on the job's one SSH
 * connection. No -z: MInt's inputs are mostly binary and the link is rarely the bottleneck.
 */
import { execa } from 'execa';
import { spawnSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { InputError, TransferError, type Step } from '../errors.js';
import { formatCommand, refusalError, tookAndRemoved } from '../gateway/protocol.js';
import { NODE_SHIM, PERL_SHIM } from '../assets/index.js';
import { RSYNC_CLIENT_OPTIONS, checkServerArgs, type Direction } from './rsync-args.js';
import type { RshBridge } from './rsh-bridge.js';

// The shims: src/assets/ (the package ships them as they are).

export interface TransferProgress {
  direction: Direction;
  bytes: number;
  percent: number;
  rate: string;
}

export interface TransferOptions {
  bridge: RshBridge;
  host: string;
  jobId: string;
  signal?: AbortSignal;
  onProgress?: (progress: TransferProgress) => void;
  /** Each file rsync wrote, as it is written (also for an attempt that fails later). */
  onFile?: (path: string) => void;
  rsyncPath?: string;
}

export interface TransferResult {
  /** Paths (relative to the destination) of the files rsync wrote. */
  files: string[];
  durationMs: number;
  /** Download with `removeJob`: the gateway removed the job after sending it. */
  removed: boolean;
}

export interface DownloadOptions extends TransferOptions {
  /**
   * Ask the gateway to remove the job once rsync has sent everything (`take`), which saves the
   * separate `rm` round trip. `removed` in the result says whether it did.
   */
  removeJob?: boolean;
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
    const name = basename(path);
    const other = seen.get(name);
    if (other !== undefined) throw new InputError(`inputs ${JSON.stringify(other)} and ${JSON.stringify(input)} would both arrive as ${JSON.stringify(name)}`, context);
    seen.set(name, input);
    resolved.push(path);
  }
  return resolved;
}

export function upload(inputs: readonly string[], options: TransferOptions): Promise<TransferResult> {
  // Absolute local paths: a relative name with a colon (a:b.dat) would otherwise read as host:path.
  return runRsync('put', [...inputs, 'mint:work/'], options);
}

export function download(outputDir: string, options: DownloadOptions): Promise<TransferResult> {
  return runRsync(options.removeJob ? 'take' : 'get', ['mint:work/', `${resolve(outputDir)}/`], options);
}

async function runRsync(verb: 'put' | 'get' | 'take', paths: string[], options: TransferOptions): Promise<TransferResult> {
  const started = performance.now();
  const direction: Direction = verb === 'put' ? 'put' : 'get';
  const step: Step = direction === 'put' ? 'upload' : 'download';
  const context = { host: options.host, jobId: options.jobId, step };
  const session = await options.bridge.session((argv) => {
    const check = checkServerArgs(argv, direction);
    if (!check.ok) return { error: check.reason };
    return { command: formatCommand({ verb, job: options.jobId, caps: check.caps }), answer: verb === 'take' };
  });
  const files: string[] = [];
  try {
    const child = execa(
      options.rsyncPath ?? 'rsync',
      [...RSYNC_CLIENT_OPTIONS[direction], '-8', '--out-format=%n', '--info=progress2', `--rsh=${rshCommand()}`, '--', ...paths],
      {
        env: { ...session.env, RSYNC_PROTECT_ARGS: undefined, RSYNC_OLD_ARGS: undefined, RSYNC_RSH: undefined },
        reject: false,
        all: false,
        // fd 3 (SHIM_FD): the shim's end of the bridge, which it inherits through rsync.
        stdio: ['ignore', 'pipe', 'pipe', session.shimEnd],
        ...(options.signal ? { cancelSignal: options.signal } : {}),
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
        options.onProgress?.({ direction, bytes: Number(progress[1]!.replace(/,/g, '')), percent: Number(progress[2]), rate: progress[3]! });
        return;
      }
      if (line && !line.endsWith('/') && line.trim() === line) {
        files.push(line);
        options.onFile?.(line);
      }
    };
    const result = await child;
    if (carry) parseLine(carry);
    // `take`: the job goes only once our rsync has put every file where it belongs.
    if (verb === 'take') await session.answer(!result.failed && result.exitCode === 0);
    const remote = session.remote();
    if (result.isCanceled) {
      throw new TransferError(`${step} cancelled`, { ...context, exitCode: -1, stderr: String(result.stderr ?? '') });
    }
    if (result.failed) {
      if (remote.refused) throw new TransferError(`${step} refused before it began: ${remote.refused}`, { ...context, stderr: String(result.stderr ?? '') });
      if (remote.exitCode !== undefined && remote.exitCode >= 64) {
        throw refusalError(verb, remote.exitCode, remote.stderr, context);
      }
      if (result.exitCode === undefined && result.code === 'ENOENT') {
        throw new TransferError('rsync is not installed on this (MInt) side', { ...context, hint: 'install rsync (apt-get install rsync)' });
      }
      const stderr = String(result.stderr ?? '').trim();
      // 12 (protocol stream) and 30/35 (timeouts) and 255 (link lost) are what a dropped connection looks like.
      const transient = [12, 30, 35, 255].includes(result.exitCode ?? 0);
      throw new TransferError(
        `${step} failed: rsync exited with code ${result.exitCode ?? 'none'}${stderr ? `: ${stderr.split('\n').slice(-4).join(' | ')}` : ''}`,
        { ...context, ...(result.exitCode === undefined ? {} : { exitCode: result.exitCode }), stderr },
        transient,
      );
    }
    return { files, durationMs: performance.now() - started, removed: verb === 'take' && tookAndRemoved(remote.stderr, options.jobId) };
  } finally {
    session.close();
  }
}
