/**
 * The client side of the gateway protocol: every verb over an open connection (and, for put, get
 * and take, the rsync bridge on it), each turned into a typed reply or a typed refusal. take's
 * handshake (the `sent` line, our answer, the `removed` line) lives in take() alone.
 */
import type { Connection } from '../connection/connect.js';
import { execCollect, type ExecOptions, type ExecResult } from '../connection/exec.js';
import { CancelledError, GatewayError, TransferError, type ErrorContext, type Step } from '../errors.js';
import type { RshBridge } from '../transfer/rsh-bridge.js';
import { DOWNLOAD_MODULE } from '../transfer/rsync-args.js';
import type { Resources, SchedulerInfo } from '../types.js';
import { runRsync, type TransferProgress } from '../transfer/rsync.js';
import {
  checkCompatible,
  formatCommand,
  formatRequest,
  parseList,
  plainArgs,
  parseLogTrailer,
  parseSchedLine,
  parseSentLine,
  parseStartedLine,
  parseProbe,
  parseStatus,
  refusalError,
  shellNoise,
  shellNoiseError,
  tookAndRemoved,
  type GatewayCommand,
  type JobListing,
  type JobState,
  type JobStatus,
  type ProbeReport,
} from './protocol.js';

export interface TransferOptions {
  jobId: string;
  signal?: AbortSignal;
  onProgress?: (progress: TransferProgress) => void;
  /** Each file rsync wrote, as it is written (also for an attempt that fails later). */
  onFile?: (path: string) => void;
  rsyncPath?: string;
}

export interface TransferResult {
  /** Paths (relative to the destination): for a download every file of it, sent or already there unchanged; for an upload those sent. */
  files: string[];
  /** Symlinks the program left that point outside its work dir, not made here: `path -> target`. */
  skipped: string[];
  durationMs: number;
  /** take: the gateway removed the job after sending it. */
  removed: boolean;
}

/** What a job asks of the site's program beyond its arguments (startx/runx). */
export interface ProgramRequest {
  /** One of the site's named programs (`--program NAME=PATH`); default the site's `--program PATH`. */
  program?: string;
  /** Variables for names the site allows (`--allow-env`). */
  env?: Readonly<Record<string, string>>;
  /** What to ask of the site's batch scheduler (`--scheduler slurm` gateways only). */
  resources?: Resources;
}

function needsRequest(args: readonly string[], request: ProgramRequest): boolean {
  return request.program !== undefined || Object.keys(request.env ?? {}).length > 0 || Object.keys(request.resources ?? {}).length > 0 || !plainArgs(args);
}

/** How the job ended, as `run` or `logs` reported it; `scheduler` when one ran it. */
export interface FollowEnd {
  state: JobState;
  exitCode: number | undefined;
  scheduler?: SchedulerInfo;
}

/** The last scheduler line in `stderr`, if any. */
function lastSched(stderr: string): SchedulerInfo | undefined {
  let last: SchedulerInfo | undefined;
  for (const line of stderr.split('\n')) last = parseSchedLine(line) ?? last;
  return last;
}

async function withScheduler(stderr: string, end: Promise<{ state: JobState; exitCode: number | undefined; scheduler?: SchedulerInfo }>): Promise<FollowEnd> {
  const { state, exitCode, scheduler } = await end;
  const sched = lastSched(stderr) ?? scheduler;
  return { state, exitCode, ...(sched ? { scheduler: sched } : {}) };
}

export class GatewayClient {
  readonly connection: Connection;
  private readonly bridge: RshBridge | undefined;

  /** `bridge` (the connection's rsync bridge) is needed for put, get and take only. */
  constructor(connection: Connection, bridge?: RshBridge) {
    this.connection = connection;
    this.bridge = bridge;
  }

  /** Uploads local files and directories (absolute paths) into the job's work dir. */
  put(inputs: readonly string[], options: TransferOptions): Promise<TransferResult> {
    // Absolute local paths: a relative name with a colon (a:b.dat) would otherwise read as host:path.
    return this.transfer('put', [...inputs, 'mint:work/'], options);
  }

  /** Downloads what the gateway exports from the job's work dir into `outputDir`. */
  get(outputDir: string, options: TransferOptions): Promise<TransferResult> {
    return this.transfer('get', [`mint::${DOWNLOAD_MODULE}/`, `${outputDir.replace(/\/+$/, '')}/`], options);
  }

  /**
   * get, then the job's removal on the same channel: the gateway prints `mint-gw: sent: job=J
   * rsync=N` when its sender is done (rsync's end, for the bridge), and removes the job only when we
   * answer `remove` and a newline after our own rsync has exited 0 (its receiver may have skipped a
   * file the sender counted as sent). `removed` says whether the gateway confirmed the removal.
   */
  take(outputDir: string, options: TransferOptions): Promise<TransferResult> {
    return this.transfer('take', [`mint::${DOWNLOAD_MODULE}/`, `${outputDir.replace(/\/+$/, '')}/`], options);
  }

  private async transfer(verb: 'put' | 'get' | 'take', paths: string[], options: TransferOptions): Promise<TransferResult> {
    if (!this.bridge) throw new Error('GatewayClient: put, get and take need the connection\'s bridge');
    const step: Step = verb === 'put' ? 'upload' : 'download';
    const context = { host: this.connection.host.name, jobId: options.jobId, step };
    const outcome = await runRsync({
      direction: verb === 'put' ? 'put' : 'get',
      paths,
      bridge: this.bridge,
      remoteCommand: (caps) => formatCommand(verb === 'put' ? { verb, job: options.jobId, caps } : { verb, job: options.jobId }),
      ...(verb === 'take' ? { endsOn: parseSentLine, reply: (localOk: boolean) => (localOk ? 'remove\n' : undefined) } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.onFile ? { onFile: options.onFile } : {}),
      ...(options.rsyncPath ? { rsyncPath: options.rsyncPath } : {}),
    });
    const { remote } = outcome;
    // A cancel (Ctrl-C, abort, timeout) is a cancel, not a failed transfer: the caller's reason.
    if (outcome.cancelled) throw options.signal?.reason instanceof CancelledError ? options.signal.reason : new CancelledError(`${step} cancelled`, context);
    if (outcome.failed) {
      if (remote.refused) throw new TransferError(`${step} refused before it began: ${remote.refused}`, { ...context, stderr: outcome.stderr });
      if (remote.exitCode !== undefined && remote.exitCode >= 64) throw await this.explained(refusalError(verb, remote.exitCode, remote.stderr, context), context);
      if (outcome.missing) throw new TransferError('rsync is not installed on this (MInt) side', { ...context, hint: 'install rsync (apt-get install rsync)' });
      // rsync read the login shell's banner as its peer's protocol version (compat.c): a site set-up
      // fault, the same on every retry. One probe on the open connection shows what the shell printed.
      if (/protocol version mismatch -- is your shell clean\?/.test(outcome.stderr)) {
        const noise = await execCollect(this.connection, formatCommand({ verb: 'probe' }))
          .then((r) => shellNoise(r.stdout.toString('utf8')))
          .catch(() => undefined);
        throw shellNoiseError(`${step} failed (rsync: protocol version mismatch -- is your shell clean?)`, noise, { ...context, ...(outcome.exitCode === undefined ? {} : { exitCode: outcome.exitCode }) });
      }
      const stderr = outcome.stderr.trim();
      // 12 (protocol stream) and 30/35 (timeouts) and 255 (link lost) are what a dropped connection looks like.
      const transient = [12, 30, 35, 255].includes(outcome.exitCode ?? 0);
      throw new TransferError(
        `${step} failed: rsync exited with code ${outcome.exitCode ?? 'none'}${stderr ? `: ${stderr.split('\n').slice(-4).join(' | ')}` : ''}`,
        { ...context, ...(outcome.exitCode === undefined ? {} : { exitCode: outcome.exitCode }), stderr },
        transient,
      );
    }
    return { files: outcome.files, skipped: outcome.skipped, durationMs: outcome.durationMs, removed: verb === 'take' && tookAndRemoved(remote.stderr, options.jobId) };
  }

  private async call(command: GatewayCommand, step: Step): Promise<string> {
    return (await this.callFull(command, step)).stdout.toString('utf8');
  }

  private async callFull(command: GatewayCommand, step: Step, options: ExecOptions = {}): Promise<ExecResult> {
    const jobId = 'job' in command ? command.job : undefined;
    const context = { host: this.connection.host.name, step, ...(jobId ? { jobId } : {}) };
    const result = await execCollect(this.connection, formatCommand(command), options);
    if (result.exitCode !== 0) throw await this.explained(refusalError(command.verb, result.exitCode, result.stderr, context, result.signal), context);
    return result;
  }

  /**
   * A usage refusal is what a gateway of another protocol answers to a request it does not know
   * (a protocol-1 gateway: "'take' takes JOB CAPS"); one probe on the open connection tells, and
   * then the error says which side to upgrade instead of quoting the usage line.
   */
  private async explained(error: Error, context: ErrorContext): Promise<Error> {
    if (!(error instanceof GatewayError && error.gatewayCode === 'E_USAGE')) return error;
    const report = await execCollect(this.connection, formatCommand({ verb: 'probe' }))
      .then((r) => parseProbe(r.stdout.toString('utf8')))
      .catch(() => undefined);
    if (!report) return error;
    try {
      checkCompatible(report, context);
    } catch (incompatible) {
      return incompatible as Error;
    }
    return error;
  }

  async probe(): Promise<ProbeReport> {
    const report = parseProbe(await this.call({ verb: 'probe' }, 'probe'), { host: this.connection.host.name, step: 'probe' });
    checkCompatible(report, { host: this.connection.host.name, step: 'probe' });
    return report;
  }

  /**
   * start, or startx with the request on stdin when it names a program, sets variables or has
   * arguments outside start's plain class.
   */
  async start(job: string, args: readonly string[], request: ProgramRequest = {}): Promise<JobStatus> {
    const context = { host: this.connection.host.name, jobId: job };
    if (needsRequest(args, request)) {
      const result = await this.callFull({ verb: 'startx', job }, 'start', { stdin: formatRequest({ ...request, args }) });
      return parseStatus(result.stdout.toString('utf8'), context);
    }
    return parseStatus(await this.call({ verb: 'start', job, args }, 'start'), context);
  }

  /**
   * `start` and `logs JOB 0` in one exec: one login-shell round trip less per job. `onStarted` hears
   * the start report (state and pid) before the first log byte; resolves with the final state.
   */
  async run(
    job: string,
    args: readonly string[],
    onStarted: (started: { state: JobState; pid: number | undefined }) => void,
    onChunk: (chunk: Buffer) => void,
    signal?: AbortSignal,
    request: ProgramRequest = {},
    onSched?: (sched: SchedulerInfo) => void,
  ): Promise<FollowEnd> {
    // A cancel is held back until the gateway has reported the start: closing the channel earlier
    // could let the start land after the caller's `cancel` found no job to stop.
    let started = false;
    const stop = new AbortController();
    const onAbort = (): void => {
      if (started) stop.abort(signal?.reason);
    };
    const onStderrLine = (line: string): void => {
      const sched = parseSchedLine(line);
      if (sched) onSched?.(sched);
      const report = parseStartedLine(line);
      if (!report) return;
      started = true;
      onStarted(report);
      if (signal?.aborted) stop.abort(signal.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const extended = needsRequest(args, request);
      const result = await this.callFull(extended ? { verb: 'runx', job } : { verb: 'run', job, args }, 'start', {
        onStdout: onChunk,
        onStderrLine,
        signal: stop.signal,
        ...(extended ? { stdin: formatRequest({ ...request, args }) } : {}),
      });
      const trailer = parseLogTrailer(result.stderr);
      return withScheduler(result.stderr, trailer ? Promise.resolve(trailer) : this.status(job));
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async status(job: string): Promise<JobStatus> {
    return parseStatus(await this.call({ verb: 'status', job }, 'run'), { host: this.connection.host.name, jobId: job });
  }

  /**
   * Streams the log from `offset` until the job ends; resolves, once the gateway has sent it all,
   * with the job's final state (the gateway reports it at the end, saving a status round trip).
   */
  async logs(
    job: string,
    offset: number,
    onChunk: (chunk: Buffer) => void,
    signal?: AbortSignal,
    onSched?: (sched: SchedulerInfo) => void,
  ): Promise<FollowEnd> {
    const onStderrLine = (line: string): void => {
      const sched = parseSchedLine(line);
      if (sched) onSched?.(sched);
    };
    const result = await this.callFull({ verb: 'logs', job, offset }, 'run', { onStdout: onChunk, onStderrLine, ...(signal ? { signal } : {}) });
    const trailer = parseLogTrailer(result.stderr);
    return withScheduler(result.stderr, trailer ? Promise.resolve(trailer) : this.status(job));
  }

  /** `onDelivered` hears that the gateway has the request (it then stops the job whether or not we wait). */
  async cancel(job: string, onDelivered?: () => void): Promise<JobStatus> {
    const result = await this.callFull({ verb: 'cancel', job }, 'run', onDelivered ? { onOpen: onDelivered } : {});
    return parseStatus(result.stdout.toString('utf8'), { host: this.connection.host.name, jobId: job });
  }

  async remove(job: string): Promise<void> {
    await this.call({ verb: 'rm', job }, 'cleanup');
  }

  /** Every job with its size and age; from a gateway before `list long`, without them. */
  /** Each job with its size and age (`list long`: protocol 2; a protocol-1 gateway is refused as such). */
  async list(): Promise<JobListing[]> {
    return parseList(await this.call({ verb: 'list', long: true }, 'probe'));
  }
}
