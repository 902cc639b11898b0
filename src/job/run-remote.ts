/**
 * runRemote and attach: one job, start to finish. The life of a job, in order:
 * resolve host -> connect -> upload -> start -> follow the log until exit -> download -> cleanup,
 * every step on the job's one SSH connection, and every step resumable after a dropped connection.
 * A program that exits non-zero is a result, not an exception (unless throwOnFailure).
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, statfs } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { CancelledError, GatewayError, InputError, MintSshError, RemoteJobError, type Step } from '../errors.js';
import { resolveHost, type InlineHost, type ResolveOptions } from '../config/resolve-host.js';
import type { CleanupPolicy } from '../config/resolved-host.js';
import type { ConnectionPool } from '../transfer/pool.js';
import { checkJobId, checkProgramArgs, checkProgramRequest, checkResources, type JobState } from '../gateway/protocol.js';
import type { ProgramRequest } from '../gateway/client.js';
import { checkInputs, type TransferProgress } from '../transfer/rsync.js';
import type { TransferResult } from '../gateway/client.js';
import type { Final, OnSched } from './steps.js';
import type { RemoteResult, Resources, SchedulerInfo } from '../types.js';
import type { EventListener } from './events.js';
import { JobSession, sleep, type Link } from './job-session.js';
import { LogFile } from './log-file.js';

export const LOG_NAME = 'remote_program_exec.log';

interface CommonOptions {
  /** A profile name, an ~/.ssh/config alias, or an inline profile. */
  host: string | InlineHost;
  /** Where results land; default the current directory. */
  outputDir?: string;
  /** Remove the remote job dir: always, only after success (the profile's default), or never. */
  cleanup?: CleanupPolicy;
  /** Throw RemoteJobError when the program fails, instead of returning the result. */
  throwOnFailure?: boolean;
  configFile?: string;
  /** Aborting cancels the job: the remote program's whole process group is stopped. */
  signal?: AbortSignal;
  /** Cancel the job after this many milliseconds (counted from the call). */
  timeoutMs?: number;
  onEvent?: EventListener;
  /** Connections shared with other jobs of this process; default one pool per process. */
  pool?: ConnectionPool;
}

export interface RunRemoteOptions extends CommonOptions {
  /** Files or directories to send; symlinks are followed (MInt hands modules symlinks). */
  inputs?: readonly string[];
  /**
   * Arguments for the remote program: at most 64, each any string of 1-4096 UTF-8 bytes without NUL,
   * delivered to its argv byte for byte (never through a shell: no ~ or $ expansion).
   */
  args?: readonly string[];
  /** One of the site's named programs (`mint-gateway install --program NAME=PATH`). */
  program?: string;
  /** Variables for the program, for names the site allows (`mint-gateway install --allow-env`). */
  env?: Readonly<Record<string, string>>;
  /**
   * When the site refuses the start for a limit (max jobs, free space: E_LIMIT), wait and try
   * again, emitting `waiting`, until it starts or `timeoutMs`/`signal` ends the call. Without it the
   * refusal is thrown and the uploaded inputs are removed (unless cleanup is `never`).
   */
  waitForSlot?: boolean;
  /** Use this job id (a lowercase UUID) instead of a fresh one. */
  jobId?: string;
  /**
   * What to ask of the site's batch scheduler (gateways installed with `--scheduler slurm`): each a
   * whole number from 1, at most the site's maximum (`--max-cpus`...; over one is refused, E_LIMIT,
   * never clamped). A site without a scheduler refuses any.
   */
  resources?: Resources;
}

export interface AttachOptions extends CommonOptions {
  /** The job to pick up again, started earlier by runRemote (or `mint-ssh-exec run`). */
  jobId: string;
}

export async function runRemote(options: RunRemoteOptions): Promise<RemoteResult> {
  const started = performance.now();
  const jobId = options.jobId ?? randomUUID();
  checkJobId(jobId);
  checkProgramArgs(options.args ?? [], { jobId });
  checkProgramRequest(options, { jobId });
  checkResources(options.resources, { jobId });
  const job = await prepare(options, jobId);
  const inputs = await checkInputs(options.inputs ?? [], { host: job.session.host.name, jobId });
  await checkOutputDir(job.outputDir, { host: job.session.host.name, jobId });

  let step: Step = 'upload';
  try {
    if (inputs.length > 0) {
      const up = await job.session.step(
        'upload',
        (link) =>
          link.steps.putInputs(jobId, inputs, {
            ...(job.signal ? { signal: job.signal } : {}),
            onProgress: (p) => job.emit({ type: 'uploading', bytes: p.bytes, percent: p.percent, rate: p.rate }),
          }),
        job.signal,
      );
      job.timings.uploadMs = up.durationMs;
      job.emit({ type: 'uploaded', files: up.files.length, ms: up.durationMs });
    } else {
      await job.session.step('connect', async () => undefined, job.signal);
    }
    job.timings.connectMs = job.connectMs();

    // From here the program may run: a cancel must stop it, not just clear the inputs.
    step = 'run';
    job.runStarted = performance.now();
    const request: ProgramRequest = {
      ...(options.program !== undefined ? { program: options.program } : {}),
      ...(options.env ? { env: options.env } : {}),
      ...(options.resources && Object.keys(options.resources).length > 0 ? { resources: options.resources } : {}),
    };
    return await finish(job, started, startAndFollow(job, options.args ?? [], request, options.waitForSlot ?? false));
  } catch (error) {
    if (error instanceof CancelledError && step === 'upload') {
      // Nothing ran: the uploaded inputs are all there is to clear, unless told to keep things.
      if (job.cleanup !== 'never') await removeQuietly(job);
    }
    if (error instanceof GatewayError && error.gatewayCode === 'E_LIMIT' && step === 'run' && job.cleanup !== 'never') {
      // The site refused to start it: its uploaded inputs must not stay behind as a created job.
      await removeQuietly(job);
    }
    throw tag(error, step, jobId);
  } finally {
    job.dispose();
  }
}

/** Picks up a job started earlier (by this process or one that died): wait, download, clean up. */
export async function attach(options: AttachOptions): Promise<RemoteResult> {
  const started = performance.now();
  checkJobId(options.jobId);
  const job = await prepare(options, options.jobId);
  await checkOutputDir(job.outputDir, { host: job.session.host.name, jobId: options.jobId });
  try {
    const status = await job.session.step('run', (link) => link.steps.status(options.jobId), job.signal);
    job.timings.connectMs = job.connectMs();
    if (status.state === 'created') {
      throw new GatewayError('GATEWAY_REFUSED', `job ${options.jobId} was uploaded but never started; nothing to attach to`, {
        host: job.session.host.name,
        jobId: options.jobId,
        gatewayCode: 'E_STATE',
      });
    }
    job.runStarted = performance.now();
    if (status.scheduler) job.onSched(status.scheduler);
    return await finish(job, started, (link, offset, onChunk, signal) => link.steps.followLog(options.jobId, offset, onChunk, signal, job.onSched));
  } catch (error) {
    throw tag(error, 'run', options.jobId);
  } finally {
    job.dispose();
  }
}

interface Job {
  jobId: string;
  session: JobSession;
  emit: EventListener;
  signal: AbortSignal | undefined;
  outputDir: string;
  cleanup: CleanupPolicy;
  throwOnFailure: boolean;
  timings: { connectMs: number; uploadMs: number; runMs: number; downloadMs: number; cleanupMs: number; totalMs: number };
  runStarted: number;
  connectMs: () => number;
  dispose: () => void;
  /** Hears the scheduler's word on the job: emits `queued` (each new reason) and `started` once. */
  onSched: OnSched;
  /** Whether `started` was emitted (by the gateway's start report or the scheduler's RUNNING). */
  started: boolean;
  /** The scheduler's last word, when one holds the job. */
  scheduler: SchedulerInfo | undefined;
}

// Slurm's states of a job that waits for its turn; mirrors mgw_sched_job_state's `queued`.
const WAITING = new Set(['PENDING', 'CONFIGURING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESV_DEL_HOLD']);
const RUNNING = new Set(['RUNNING', 'COMPLETING', 'STAGE_OUT', 'SUSPENDED', 'SIGNALING', 'RESIZING', 'STOPPED']);

async function prepare(options: CommonOptions, jobId: string): Promise<Job> {
  const resolveOptions: ResolveOptions = options.configFile ? { configFile: options.configFile } : {};
  const host = await resolveHost(options.host, resolveOptions);
  const emit: EventListener = options.onEvent ?? (() => undefined);
  // One signal for the caller's abort and our own timeout.
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(new CancelledError('job cancelled by the caller', { host: host.name, jobId }));
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => controller.abort(new CancelledError(`job timed out after ${options.timeoutMs} ms`, { host: host.name, jobId })), options.timeoutMs);
  let firstConnectMs: number | undefined;
  const session = new JobSession(
    host,
    resolveOptions,
    (event) => {
      if (event.type === 'connected' && firstConnectMs === undefined) firstConnectMs = event.ms;
      emit(event);
    },
    controller.signal,
    options.pool,
  );
  let lastQueued = '';
  const job: Job = {
    jobId,
    session,
    emit,
    signal: controller.signal,
    outputDir: resolve(options.outputDir ?? '.'),
    cleanup: options.cleanup ?? host.cleanup,
    throwOnFailure: options.throwOnFailure ?? false,
    timings: { connectMs: 0, uploadMs: 0, runMs: 0, downloadMs: 0, cleanupMs: 0, totalMs: 0 },
    runStarted: 0,
    connectMs: () => firstConnectMs ?? 0,
    dispose: () => {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      void session.drop();
    },
    started: false,
    scheduler: undefined,
    onSched: (sched) => {
      job.scheduler = sched;
      if (WAITING.has(sched.state) && !job.started) {
        const key = `${sched.id} ${sched.reason}`;
        if (key !== lastQueued) emit({ type: 'queued', jobId, schedulerId: sched.id, reason: sched.reason });
        lastQueued = key;
      } else if (RUNNING.has(sched.state) && !job.started) {
        job.started = true;
        emit({ type: 'started', jobId, pid: undefined });
      }
    },
  };
  return job;
}

/** One attempt at following the log from `offset` to the end; the first may also start the job. */
type Follow = (link: Link, offset: number, onChunk: (chunk: Buffer) => void, signal: AbortSignal | undefined) => Promise<Final>;

/**
 * The first attempt sends `run` (start + follow in one exec). After a dropped connection, `run` is
 * sent again only if `status` proves it never took effect; otherwise `logs` resumes at the byte
 * offset held, so the program runs once and no log byte is lost or repeated.
 */
function startAndFollow(job: Job, args: readonly string[], request: ProgramRequest, waitForSlot: boolean): Follow {
  let sent = false;
  // A job a scheduler holds is reported `queued` here; `started` comes when the scheduler runs it.
  const onStarted = (report: { state: JobState; pid: number | undefined }): void => {
    if (report.state === 'queued' || job.started) return;
    job.started = true;
    job.emit({ type: 'started', jobId: job.jobId, pid: report.pid });
  };
  return async (link, offset, onChunk, signal) => {
    if (sent) {
      const seen = await link.steps.status(job.jobId).catch(undefinedIf('E_NOJOB'));
      if (seen && seen.state !== 'created') return link.steps.followLog(job.jobId, offset, onChunk, signal, job.onSched);
    }
    sent = true;
    for (let wait = 2000; ; wait = Math.min(wait * 2, 30_000)) {
      try {
        return await link.steps.startAndFollow(job.jobId, args, onStarted, onChunk, signal, request, job.onSched);
      } catch (error) {
        if (!(waitForSlot && error instanceof GatewayError && error.gatewayCode === 'E_LIMIT')) throw error;
        // Resources over a site maximum never fit, however long one waits (mgw_sched_within).
        if (/over the site maximum/.test(error.message)) throw error;
        job.emit({ type: 'waiting', reason: error.message, delayMs: wait });
        await sleep(wait, job.signal);
        job.signal?.throwIfAborted();
      }
    }
  };
}

/**
 * The job's end, in four phases, each with its inputs and outputs in its signature: follow the log
 * until the program ends (or stop it), keep the log, fetch the results, clean up; then one result.
 */
async function finish(job: Job, started: number, follow: Follow): Promise<RemoteResult> {
  const ran = await followToEnd(job, follow);
  job.timings.runMs = performance.now() - job.runStarted;
  if (ran.final.scheduler) job.scheduler = ran.final.scheduler;
  // A scheduler's job that ran between two polls was never seen RUNNING: it did start.
  if (job.scheduler && !job.started && ran.final.exitCode !== undefined) {
    job.started = true;
    job.emit({ type: 'started', jobId: job.jobId, pid: undefined });
  }
  job.emit({ type: 'exited', exitCode: ran.final.exitCode, state: ran.final.state });

  const programFailed = ran.final.state !== 'exited' || ran.final.exitCode !== 0;
  const wanted = job.cleanup === 'always' || (job.cleanup === 'on-success' && !programFailed);
  // The log is on disk (fsynced) under its name before anything can remove the remote job.
  const logPath = join(job.outputDir, LOG_NAME);
  await ran.log.publish(logPath);

  const fetched = ran.cancelled ? undefined : await fetchAll(job, wanted && !ran.neverRan).catch(async (error: unknown) => {
    await ran.log.settle(logPath, false);
    throw error;
  });
  // A program's own file of that name does not replace the log.
  await ran.log.settle(logPath, fetched?.files.includes(LOG_NAME) ?? false);
  const cancelled = ran.cancelled ?? fetched?.cancelled;

  const t = performance.now();
  // Results whose download was cancelled stay on the remote side, whatever the policy.
  let cleanedUp = fetched?.removed ?? false;
  if ((wanted || ran.neverRan) && !fetched?.cancelled && !cleanedUp && job.cleanup !== 'never') {
    await job.session.step('cleanup', (link) => link.steps.remove(job.jobId), undefined);
    cleanedUp = true;
  }
  job.timings.cleanupMs = performance.now() - t;
  job.emit({ type: 'cleaned-up', removed: cleanedUp });
  job.timings.totalMs = performance.now() - started;

  const result: RemoteResult = {
    host: job.session.host.name,
    jobId: job.jobId,
    exitCode: ran.final.exitCode,
    state: ran.final.state,
    failed: programFailed || Boolean(fetched?.cancelled),
    cancelled: Boolean(cancelled) || ran.final.state === 'cancelled',
    log: ran.log.tailText(),
    logFile: logPath,
    logBytes: ran.log.bytes,
    files: fetched?.files ?? [],
    skipped: fetched?.skipped ?? [],
    outputDir: job.outputDir,
    cleanedUp,
    connections: job.session.connections,
    timings: job.timings,
    ...(job.scheduler ? { scheduler: job.scheduler } : {}),
  };
  job.emit({ type: 'done', result });
  if (cancelled) {
    cancelled.result = result;
    throw cancelled;
  }
  if (result.failed && job.throwOnFailure) throw new RemoteJobError(result);
  return result;
}

interface Ran {
  final: Final;
  /** Closed, on disk in outputDir under a part name until finish() names it. */
  log: LogFile;
  /** Set when the caller cancelled (or the timeout fired) while the program ran. */
  cancelled: CancelledError | undefined;
  /** Cancelled before the program started: the inputs are all there is to clear. */
  neverRan: boolean;
}

/**
 * Follows the log until the program ends; after a drop the stream resumes at the byte it stopped
 * at (nothing lost, nothing twice). A cancel stops the remote process group and then reads what
 * the log says up to its end; a job the gateway has never heard of never ran.
 */
async function followToEnd(job: Job, follow: Follow): Promise<Ran> {
  const { jobId, session, emit } = job;
  await mkdir(job.outputDir, { recursive: true });
  const log = new LogFile(join(job.outputDir, `.${LOG_NAME}.${process.pid}.part`));
  const decoder = new StringDecoder('utf8');
  const onChunk = (chunk: Buffer): void => {
    log.write(chunk);
    const text = decoder.write(chunk);
    if (text) emit({ type: 'log', text });
  };
  const done = (final: Final, cancelled: CancelledError | undefined, neverRan: boolean): Ran => {
    const rest = decoder.end();
    if (rest) emit({ type: 'log', text: rest });
    log.close();
    return { final, log, cancelled, neverRan };
  };
  try {
    try {
      return done(await session.step('run', (link) => follow(link, log.bytes, onChunk, job.signal), job.signal), undefined, false);
    } catch (error) {
      if (!job.signal?.aborted) throw error;
    }
    const cancelled = cancellation(job.signal, 'job cancelled', jobId);
    const stopped = await session.step('run', (link) => link.steps.cancel(jobId), undefined).catch(undefinedIf('E_NOJOB'));
    if (!stopped) return done({ state: 'cancelled', exitCode: undefined }, cancelled, true);
    try {
      return done(await session.step('run', (link) => link.steps.followLog(jobId, log.bytes, onChunk, undefined, job.onSched), undefined), cancelled, false);
    } catch (error) {
      // Cancelled before it started: started/ exists but no log was ever made.
      if (!(error instanceof GatewayError && error.gatewayCode === 'E_STATE')) throw error;
      return done({ state: stopped.state, exitCode: stopped.exitCode }, cancelled, true);
    }
  } catch (error) {
    // The remote log is whole and `attach` reads it again from byte 0: no partial copy stays here.
    await log.discard();
    throw error;
  }
}

interface Fetched {
  files: string[];
  skipped: string[];
  /** take removed the job after sending everything. */
  removed: boolean;
  /** Set when the download was cancelled: the remote results then stay. */
  cancelled: CancelledError | undefined;
}

/** Downloads the results (with `take` when the job is to go); a cancel here keeps them remotely. */
async function fetchAll(job: Job, removeJob: boolean): Promise<Fetched> {
  const got = new Set<string>();
  try {
    const down = await job.session.step('download', (link) => fetchResults(job, link, removeJob, (file) => got.add(file)), job.signal);
    job.timings.downloadMs = down.durationMs;
    job.emit({ type: 'downloaded', files: got.size, ms: down.durationMs });
    return { files: [...got], skipped: down.skipped, removed: down.removed, cancelled: undefined };
  } catch (error) {
    if (!job.signal?.aborted) throw error;
    return { files: [...got], skipped: [], removed: false, cancelled: cancellation(job.signal, 'download cancelled', job.jobId) };
  }
}

/**
 * One download attempt. With `take`, the gateway removes the job only when our rsync has exited 0
 * and we have said so on the channel; if the connection drops before its `removed` line arrives,
 * `removed` is false and the cleanup step's `rm` (a no-op on a removed job) settles it.
 */
async function fetchResults(job: Job, link: Link, removeJob: boolean, onFile: (file: string) => void): Promise<TransferResult> {
  const options = {
    ...(job.signal ? { signal: job.signal } : {}),
    onProgress: (p: TransferProgress) => job.emit({ type: 'downloading', bytes: p.bytes, percent: p.percent, rate: p.rate }),
    onFile,
  };
  const outputDir = resolve(job.outputDir);
  return link.steps.fetchResults(job.jobId, outputDir, { ...options, remove: removeJob });
}

/** For `.catch`: the gateway's refusal with this code means "nothing there"; anything else throws. */
function undefinedIf(gatewayCode: string): (error: unknown) => undefined {
  return (error) => {
    if (error instanceof GatewayError && error.gatewayCode === gatewayCode) return undefined;
    throw error;
  };
}

/** The CancelledError an aborted job signal carries (prepare() always aborts with one). */
function cancellation(signal: AbortSignal, fallback: string, jobId: string): CancelledError {
  return signal.reason instanceof CancelledError ? signal.reason : new CancelledError(fallback, { jobId });
}

async function removeQuietly(job: Job): Promise<void> {
  await job.session
    .step('cleanup', (link) => link.steps.remove(job.jobId), undefined)
    .catch(() => undefined);
}

function tag(error: unknown, step: Step, jobId: string): unknown {
  if (error instanceof MintSshError) {
    error.step ??= step;
    error.jobId ??= jobId;
  }
  return error;
}

/**
 * The output dir, checked before anything is sent: it can be made, written and has room. A dir that
 * cannot be made (`-o afile/sub`) used to be found after upload, run and exit, as a raw ENOTDIR.
 */
async function checkOutputDir(dir: string, context: { host: string; jobId: string }): Promise<void> {
  const refuse = (why: string): never => {
    throw new InputError(`output dir ${JSON.stringify(dir)} ${why}`, { step: 'config', ...context });
  };
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    refuse(`cannot be made (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  await access(dir, constants.W_OK | constants.X_OK).catch(() => refuse('is not writable'));
  const fs = await statfs(dir).catch(() => undefined);
  if (fs && fs.bavail === 0) refuse('has no free space');
}
