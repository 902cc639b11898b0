/**
 * runRemote and attach: one job, start to finish. The life of a job, in order:
 * resolve host -> connect -> upload -> start -> follow the log until exit -> download -> cleanup,
 * every step on the job's one SSH connection, and every step resumable after a dropped connection.
 * A program that exits non-zero is a result, not an exception (unless throwOnFailure).
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, rename, rm, statfs, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { CancelledError, GatewayError, InputError, IntegrityError, MintSshError, RemoteJobError, TransferError, type Step } from '../errors.js';
import { resolveHost, type InlineHost, type ResolveOptions } from '../config/resolve-host.js';
import { CERTIFICATE_MARGIN_MS, DEFAULT_JOB_CERTIFICATE_MS, issueJobCredential } from '../connection/cert-authority.js';
import type { CleanupPolicy } from '../config/resolved-host.js';
import type { ConnectionPool } from '../transfer/pool.js';
import { checkJobId, checkProgramArgs, checkProgramRequest, checkResources, type JobState } from '../gateway/protocol.js';
import type { ProgramRequest } from '../gateway/client.js';
import { checkInputs, type TransferProgress } from '../transfer/rsync.js';
import type { ServedManifest, TransferResult } from '../gateway/client.js';
import { describeDifference, manifestDigest, manifestOfInputs } from '../transfer/manifest.js';
import { inlineUpload } from '../transfer/inline.js';
import { parseCertificate } from '../connection/certificate.js';
import type { Final, OnSched } from './steps.js';
import type { ManifestEntry, RemoteResult, Resources, SchedulerInfo } from '../types.js';
import type { EventListener } from './events.js';
import { JobSession, sleep, type Link } from './job-session.js';
import { LogFile } from './log-file.js';

export const LOG_NAME = 'remote_program_exec.log';

/**
 * The job record beside the results (issue 17, part 4): a dot-file, so that a module listing its
 * results by name does not take it for one; a program's own file of that name is replaced.
 */
export const RECORD_NAME = '.mint-job.json';

/**
 * The wind-down after a cancel or a timeout (stop the remote program, read the rest of its log,
 * remove what the cleanup policy says) gets this long from the moment `signal` or `timeoutMs`
 * fired, and the call ends by then (README, timeoutMs). It used to have no bound of its own and
 * retried against a dead host: `timeoutMs: 1500` rejected after 12.5 s, an abort at 1.5 s after
 * 15.1 s (issue 14, item 8). What it could not do in time is left to the site (its gateway KILLs a
 * program that ignores TERM after its grace time; `--max-age-days` sweeps old jobs) or to
 * `mint-ssh-exec cancel`/`rm`, and the CancelledError's hint says which. 2 s, not 1: a cancel of a
 * live job is two verbs (each a login shell and a gateway start) plus the gateway's 0.2 s polling
 * for the program's end, and with 1 s cancel.test.ts lost the exit status (143) when 8 test files
 * ran at once on this 2-core machine.
 */
export const CANCEL_MARGIN_MS = 2000;

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
  // Small inputs may travel with the start (jobx, where the transport has it): then the upload
  // step sends nothing, and `uploaded` comes with the start's report.
  let withStart = false;
  // Small inputs go as one inline stream (transfer/inline.ts), whose manifest comes from the very
  // bytes it carries; others are hashed in a worker while rsync sends them (transfer/manifest.ts).
  // The start sends the digest. A rejection is read where it is awaited, not as an unhandled one.
  const inline = inputs.length > 0 && inlineAllowed() ? inlineUpload(inputs) : undefined;
  const hashing = inline ? Promise.resolve(inline.entries) : manifestOfInputs(inputs);
  hashing.catch(() => undefined);
  try {
    if (inputs.length > 0) {
      const up = await jobStep(job, 'upload', async (link) => {
        if (inline && link.steps.inputsWithStart) {
          withStart = true;
          return undefined;
        }
        return link.steps.putInputs(jobId, inputs, {
          signal: job.signal,
          ...(inline ? { inline } : {}),
          onProgress: (p) => job.emit({ type: 'uploading', bytes: p.bytes, percent: p.percent, rate: p.rate, bytesPerSecond: p.bytesPerSecond }),
        });
      });
      if (up) {
        job.timings.uploadMs = up.durationMs;
        job.emit({ type: 'uploaded', files: up.files.length, ms: up.durationMs });
      }
    } else {
      await jobStep(job, 'connect', async () => undefined);
    }
    job.timings.connectMs = job.connectMs();

    // From here the program may run: a cancel must stop it, not just clear the inputs.
    step = 'run';
    job.runStarted = performance.now();
    const hashStarted = performance.now();
    job.inputs = await hashing;
    // What the hash took beyond the upload it overlapped with.
    job.timings.hashWaitMs = performance.now() - hashStarted;
    const request: ProgramRequest = {
      // Without inputs there is nothing to verify, and the start stays `run` (no request on stdin).
      ...(inputs.length > 0 ? { inputs: job.inputs } : {}),
      ...(withStart && inline ? { inline } : {}),
      ...(options.program !== undefined ? { program: options.program } : {}),
      ...(options.env ? { env: options.env } : {}),
      ...(options.resources && Object.keys(options.resources).length > 0 ? { resources: options.resources } : {}),
    };
    const uploaded = withStart && inline ? { files: inline.files.length, since: performance.now() } : undefined;
    return await finish(job, started, startAndFollow(job, options.args ?? [], request, options.waitForSlot ?? false, uploaded));
  } catch (error) {
    if (error instanceof CancelledError && step === 'upload' && job.cleanup !== 'never' && job.session.reached) {
      // Nothing ran: the uploaded inputs are all there is to clear, unless told to keep things. (A
      // host never reached holds nothing of the job.)
      if (!(await removeQuietly(job))) {
        throw tag(noted(error, `the inputs sent so far stay on ${job.session.host.name} as job ${jobId}: \`mint-ssh-exec rm ${job.session.host.name} ${jobId}\` removes them once the host answers (the site's --max-age-days sweep removes old jobs)`), step, jobId);
      }
    }
    if (error instanceof GatewayError && error.code === 'GATEWAY_PROTOCOL' && step === 'upload' && job.cleanup !== 'never') {
      // A login shell that prints broke rsync's stream: nothing arrived that a later run could use,
      // but the gateway had made the job's dir (rm's answer is not read byte for byte, so it works).
      await removeQuietly(job);
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

/**
 * Whether small jobs may use inline streams (putx/takex, transfer/inline.ts); MINT_SSH_EXEC_INLINE=0
 * sends everything through rsync, as before them (to compare, or to rule them out).
 */
export function inlineAllowed(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.MINT_SSH_EXEC_INLINE !== '0';
}

/** Picks up a job started earlier (by this process or one that died): wait, download, clean up. */
export async function attach(options: AttachOptions): Promise<RemoteResult> {
  const started = performance.now();
  checkJobId(options.jobId);
  const job = await prepare(options, options.jobId);
  await checkOutputDir(job.outputDir, { host: job.session.host.name, jobId: options.jobId });
  try {
    const status = await jobStep(job, 'run', (link) => link.steps.status(options.jobId));
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
  /** Aborts on the caller's abort or the timeout. */
  signal: AbortSignal;
  /** Aborts CANCEL_MARGIN_MS after `signal`: the end of the wind-down, and of the call. */
  windDown: AbortSignal;
  outputDir: string;
  cleanup: CleanupPolicy;
  throwOnFailure: boolean;
  timings: { connectMs: number; uploadMs: number; runMs: number; downloadMs: number; cleanupMs: number; totalMs: number; hashWaitMs?: number };
  runStarted: number;
  connectMs: () => number;
  dispose: () => void;
  /** Hears the scheduler's word on the job: emits `queued` (each new reason) and `started` once. */
  onSched: OnSched;
  /** Whether `started` was emitted (by the gateway's start report or the scheduler's RUNNING). */
  started: boolean;
  /** The scheduler's last word, when one holds the job. */
  scheduler: SchedulerInfo | undefined;
  /** The inputs' manifest as sent (runRemote; attach does not know it). */
  inputs: ManifestEntry[] | undefined;
  /** When runRemote or attach was called, for the job record. */
  calledAt: Date;
}

// Slurm's states of a job that waits for its turn or runs; mirrors mgw_sched_class.
const WAITING = new Set(['PENDING', 'CONFIGURING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESV_DEL_HOLD']);
const RUNNING = new Set(['RUNNING', 'COMPLETING', 'STAGE_OUT', 'SUSPENDED', 'SIGNALING', 'RESIZING', 'STOPPED']);

/**
 * Whether the scheduler's raw state says the job waits or runs (Slurm's words, Grid Engine's
 * letters, PBS's one letter), as mgw_sched_class reads them; anything else has ended or is unknown.
 */
export function schedulerPhase(state: string): 'waiting' | 'running' | undefined {
  if (WAITING.has(state)) return 'waiting';
  if (RUNNING.has(state)) return 'running';
  // PBS: Q queued, W waiting for its time, H held, T in transit; R running, E exiting, B begun, S/U suspended.
  if (/^[QWHTM]$/.test(state)) return 'waiting';
  if (/^[REBSU]$/.test(state)) return 'running';
  // Grid Engine combines letters (qw, hqw, Eqw, r, t, dr, Rr); E is an error state.
  if (/^[a-zA-Z]+$/.test(state) && /[a-z]/.test(state) && !state.includes('E')) {
    if (/[rt]/.test(state)) return 'running';
    if (/[qw]/.test(state)) return 'waiting';
  }
  return undefined;
}

async function prepare(options: CommonOptions, jobId: string): Promise<Job> {
  const resolveOptions: ResolveOptions = options.configFile ? { configFile: options.configFile } : {};
  const resolved = await resolveHost(options.host, resolveOptions);
  // One certificate per job, made here so that every reconnect of the job reuses it (and attach,
  // which comes through here too, gets its own): valid for the job's timeout plus a margin.
  const host = resolved.perJobCertificate
    ? {
        ...resolved,
        jobCredential: await issueJobCredential(resolved, {
          purpose: `job ${jobId}`,
          lifetimeMs: options.timeoutMs === undefined ? DEFAULT_JOB_CERTIFICATE_MS : options.timeoutMs + CERTIFICATE_MARGIN_MS,
        }),
      }
    : resolved;
  const emit: EventListener = options.onEvent ?? (() => undefined);
  // One signal for the caller's abort and our own timeout.
  const controller = new AbortController();
  const windDown = new AbortController();
  let windDownTimer: NodeJS.Timeout | undefined;
  controller.signal.addEventListener(
    'abort',
    () => {
      // The same reason: a step the margin cuts short reports the cancel or the timeout itself.
      windDownTimer = setTimeout(() => windDown.abort(controller.signal.reason), CANCEL_MARGIN_MS);
    },
    { once: true },
  );
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
    windDown: windDown.signal,
    outputDir: resolve(options.outputDir ?? '.'),
    cleanup: options.cleanup ?? host.cleanup,
    throwOnFailure: options.throwOnFailure ?? false,
    timings: { connectMs: 0, uploadMs: 0, runMs: 0, downloadMs: 0, cleanupMs: 0, totalMs: 0 },
    runStarted: 0,
    connectMs: () => firstConnectMs ?? 0,
    dispose: () => {
      if (timer) clearTimeout(timer);
      if (windDownTimer) clearTimeout(windDownTimer);
      options.signal?.removeEventListener('abort', onAbort);
      // What a deadline cut short and still runs (a handshake with a host that hangs) stops now.
      if (!windDown.signal.aborted) windDown.abort(new CancelledError('the job is over', { host: host.name, jobId }));
      void session.drop();
    },
    started: false,
    scheduler: undefined,
    inputs: undefined,
    calledAt: new Date(),
    onSched: (sched) => {
      job.scheduler = sched;
      const phase = schedulerPhase(sched.state);
      if (phase === 'waiting' && !job.started) {
        const key = `${sched.id} ${sched.reason}`;
        if (key !== lastQueued) emit({ type: 'queued', jobId, schedulerId: sched.id, reason: sched.reason });
        lastQueued = key;
      } else if (phase === 'running' && !job.started) {
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
function startAndFollow(job: Job, args: readonly string[], request: ProgramRequest, waitForSlot: boolean, uploaded?: { files: number; since: number }): Follow {
  let sent = false;
  // A job a scheduler holds is reported `queued` here; `started` comes when the scheduler runs it.
  const onStarted = (report: { state: JobState; pid: number | undefined }): void => {
    // Inputs sent with the start (jobx) have landed, and were checked, when the start is reported.
    if (uploaded) {
      job.emit({ type: 'uploaded', files: uploaded.files, ms: performance.now() - uploaded.since });
      uploaded = undefined;
    }
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
        // Resources over a site maximum never fit, however long one waits (mgw_sched_within), nor
        // do inputs over a per-job cap (an upload sent with the start, jobx).
        if (/over the site maximum|the upload was refused/.test(error.message)) throw error;
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
  let cancelled = ran.cancelled ?? fetched?.cancelled;

  const t = performance.now();
  // Results whose download was cancelled stay on the remote side, whatever the policy; so does a
  // program whose stop was not confirmed.
  let cleanedUp = fetched?.removed ?? false;
  if ((wanted || ran.neverRan) && !fetched?.cancelled && !cleanedUp && job.cleanup !== 'never' && ran.final.state !== 'running') {
    if (!cancelled) {
      await job.session.step('cleanup', (link) => link.steps.remove(job.jobId), job.windDown, { deadline: job.windDown });
      cleanedUp = true;
    } else if (await removeQuietly(job)) {
      cleanedUp = true;
    } else {
      // Best effort after a cancel: the call's bound comes first.
      cancelled = noted(cancelled, `job ${job.jobId} stays on ${job.session.host.name}: \`mint-ssh-exec rm ${job.session.host.name} ${job.jobId}\` removes it once the host answers (the site's --max-age-days sweep removes old jobs)`);
    }
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
    manifest: fetched?.served?.entries ?? [],
  };
  // Beside the results: a job whose download did not happen (cancelled, never ran) leaves none.
  const record = fetched && !fetched.cancelled ? await writeRecord(job, result, fetched.served) : undefined;
  if (record) result.recordFile = record;
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
  // A log that cannot be written here (a full disk) stops the following, not the program: thrown
  // inside ssh2's data handler it would crash the process, and read on it would be lost.
  const writeFailed = new AbortController();
  let ended = false;
  const onChunk = (chunk: Buffer): void => {
    // A follow that a deadline cut short may still deliver: the log is what it was at the end.
    if (ended || writeFailed.signal.aborted) return;
    try {
      log.write(chunk);
    } catch (error) {
      const why = (error as NodeJS.ErrnoException).code ?? String(error);
      writeFailed.abort(
        new TransferError(`cannot write the log into ${job.outputDir} (${why}); the job stays on the site, nothing is lost`, {
          host: session.host.name,
          jobId,
          step: 'run',
          hint: `make room, then: mint-ssh-exec attach ${session.host.name} ${jobId} -o DIR`,
        }),
      );
      return;
    }
    const text = decoder.write(chunk);
    if (text) emit({ type: 'log', text });
  };
  const done = (final: Final, cancelled: CancelledError | undefined, neverRan: boolean): Ran => {
    ended = true;
    const rest = decoder.end();
    if (rest) emit({ type: 'log', text: rest });
    log.close();
    return { final, log, cancelled, neverRan };
  };
  try {
    try {
      const signal = AbortSignal.any([job.signal, writeFailed.signal]);
      return done(await jobStep(job, 'run', (link) => follow(link, log.bytes, onChunk, signal)), undefined, false);
    } catch (error) {
      if (writeFailed.signal.aborted) throw writeFailed.signal.reason;
      if (!job.signal.aborted) throw error;
    }
    const cancelled = cancellation(job.signal, 'job cancelled', jobId);
    const host = session.host.name;
    // The stop and the rest of the log at once, each one attempt, both within the margin: the log
    // ends when the program does, so reading it while the gateway stops the program costs no time.
    let delivered = false;
    const settle = <T>(promise: Promise<T>): Promise<{ value: T } | { error: unknown }> => promise.then((value) => ({ value }), (error: unknown) => ({ error }));
    const restSignal = AbortSignal.any([job.windDown, writeFailed.signal]);
    const [stop, rest] = await Promise.all([
      settle(windDownStep(job, 'run', (link) => link.steps.cancel(jobId, () => (delivered = true)))),
      settle(windDownStep(job, 'run', (link) => link.steps.followLog(jobId, log.bytes, onChunk, restSignal, job.onSched))),
    ]);
    if (writeFailed.signal.aborted) throw writeFailed.signal.reason;
    const refusal = (outcome: { error: unknown } | { value: unknown }): string | undefined =>
      'error' in outcome && outcome.error instanceof GatewayError ? (outcome.error.gatewayCode ?? outcome.error.code) : undefined;
    if (refusal(stop) === 'E_NOJOB') return done({ state: 'cancelled', exitCode: undefined }, cancelled, true);
    if ('value' in rest) return done(rest.value, cancelled, false);
    if ('value' in stop) {
      // Cancelled before it started: started/ exists but no log was ever made.
      // The cancel's reply is the scheduler's last word too (CANCELLED), where one holds the job.
      const scheduler = stop.value.scheduler;
      return done({ state: stop.value.state, exitCode: stop.value.exitCode, ...(scheduler ? { scheduler } : {}) }, cancelled, refusal(rest) === 'E_STATE');
    }
    // A refusal is the gateway's word on the job: as before, it is the error.
    if ('error' in stop && stop.error instanceof GatewayError) throw stop.error;
    if (delivered) {
      return done(
        { state: 'cancelled', exitCode: undefined },
        noted(cancelled, `the stop reached ${host} but the program had not ended ${CANCEL_MARGIN_MS} ms later; the site KILLs what ignores TERM after its grace time (\`mint-ssh-exec jobs ${host}\` shows the job's state)`),
        false,
      );
    }
    return done(
      { state: 'running', exitCode: undefined },
      noted(cancelled, `could not reach ${host} to stop job ${jobId}: it may still be running; \`mint-ssh-exec cancel ${host} ${jobId}\` stops it once the host answers`),
      false,
    );
  } catch (error) {
    // The remote log is whole and `attach` reads it again from byte 0: no partial copy stays here.
    ended = true;
    await log.discard();
    throw error;
  }
}

interface Fetched {
  files: string[];
  skipped: string[];
  /** What the gateway served, checked here (absent from a gateway before manifests). */
  served: ServedManifest | undefined;
  /** take removed the job after sending everything. */
  removed: boolean;
  /** Set when the download was cancelled: the remote results then stay. */
  cancelled: CancelledError | undefined;
}

/** Downloads the results (with `take` when the job is to go); a cancel here keeps them remotely. */
async function fetchAll(job: Job, removeJob: boolean): Promise<Fetched> {
  const got = new Set<string>();
  try {
    let down = await jobStep(job, 'download', (link) => fetchResults(job, link, removeJob, (file) => got.add(file)));
    let durationMs = down.durationMs;
    if (down.differences && down.differences.length > 0) {
      // Once more, the differing files first removed here (rsync would take a file of the right
      // size and time for unchanged); take kept the job, since we did not answer `remove`.
      for (const d of down.differences) if (d.problem === 'changed') await rm(join(job.outputDir, d.path), { force: true });
      job.emit({ type: 'retrying', step: 'download', attempt: 2, delayMs: 0, error: new IntegrityError('outputs', `${down.differences.length} file(s) differ from the gateway's manifest: ${describeDifference(down.differences[0]!, 'here', 'as served')}; fetching again`, { host: job.session.host.name, jobId: job.jobId, differences: down.differences }) });
      down = await jobStep(job, 'download', (link) => fetchResults(job, link, removeJob, (file) => got.add(file)));
      durationMs += down.durationMs;
    }
    if (down.differences && down.differences.length > 0) {
      const named = down.differences.slice(0, 5).map((d) => describeDifference(d, 'here', 'as served'));
      throw new IntegrityError('outputs', `results of job ${job.jobId} differ from what the gateway served, twice: ${named.join(', ')}${down.differences.length > 5 ? ` and ${down.differences.length - 5} more` : ''}`, {
        host: job.session.host.name,
        jobId: job.jobId,
        differences: down.differences,
        hint: `the job stays on ${job.session.host.name}; \`mint-ssh-exec attach ${job.session.host.name} ${job.jobId} -o DIR\` fetches it again`,
      });
    }
    job.timings.downloadMs = durationMs;
    job.emit({ type: 'downloaded', files: got.size, ms: durationMs });
    return { files: [...got], skipped: down.skipped, served: down.served, removed: down.removed, cancelled: undefined };
  } catch (error) {
    if (!job.signal.aborted) throw error;
    return { files: [...got], skipped: [], served: undefined, removed: false, cancelled: cancellation(job.signal, 'download cancelled', job.jobId) };
  }
}

/**
 * The job record, outputDir/.mint-job.json, written whole (a temp name, then rename): where and how
 * the job ran, as far as this side can say. Best effort: a record that cannot be written does not
 * fail a job whose results are here (result.recordFile is then absent).
 */
async function writeRecord(job: Job, result: RemoteResult, served: ServedManifest | undefined): Promise<string | undefined> {
  const host = job.session.host;
  let certificate: { keyId: string; serial: string; validBefore: string } | undefined;
  if (host.jobCredential) {
    try {
      const cert = parseCertificate(host.jobCredential.certificate);
      certificate = { keyId: cert.keyId, serial: String(cert.serial), validBefore: new Date(Number(cert.validBefore) * 1000).toISOString() };
    } catch {
      // Our own certificate, made in this process: unreadable only through a bug; the record says less.
    }
  }
  const record = {
    schema: 1,
    jobId: job.jobId,
    host: { name: host.name, hostname: host.hostname, port: host.port, user: host.user, hostKeyAlias: host.hostKeyAlias },
    gateway: { version: served?.gatewayVersion ?? null },
    certificate: certificate ?? (host.certificateFiles.length > 0 ? { files: host.certificateFiles } : null),
    calledAt: job.calledAt.toISOString(),
    finishedAt: new Date().toISOString(),
    state: result.state,
    exitCode: result.exitCode ?? null,
    timings: result.timings,
    scheduler: result.scheduler ?? null,
    inputs: job.inputs ? { sha256: manifestDigest(job.inputs), files: job.inputs } : null,
    outputs: served ? { sha256: served.digest, files: served.entries } : null,
    audit: { headAtTake: served?.auditHead ?? null },
    cleanedUp: result.cleanedUp,
  };
  const path = join(job.outputDir, RECORD_NAME);
  const part = `${path}.${process.pid}.part`;
  try {
    await writeFile(part, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
    await rename(part, path);
    return path;
  } catch {
    await rm(part, { force: true }).catch(() => undefined);
    return undefined;
  }
}

/**
 * One download attempt. With `take`, the gateway removes the job only when our rsync has exited 0
 * and we have said so on the channel; if the connection drops before its `removed` line arrives,
 * `removed` is false and the cleanup step's `rm` (a no-op on a removed job) settles it.
 */
async function fetchResults(job: Job, link: Link, removeJob: boolean, onFile: (file: string) => void): Promise<TransferResult> {
  const options = {
    signal: job.signal,
    onProgress: (p: TransferProgress) => job.emit({ type: 'downloading', bytes: p.bytes, percent: p.percent, rate: p.rate, bytesPerSecond: p.bytesPerSecond }),
    onFile,
  };
  const outputDir = resolve(job.outputDir);
  return link.steps.fetchResults(job.jobId, outputDir, { ...options, remove: removeJob, inlineResults: inlineAllowed() });
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

/** A step of the job while it is live: the job's signal stops it, the end of the wind-down cuts it. */
function jobStep<T>(job: Job, name: Step, fn: (link: Link) => Promise<T>): Promise<T> {
  return job.session.step(name, fn, job.signal, { deadline: job.windDown });
}

/** A step of the wind-down after a cancel: one attempt, within the margin. */
function windDownStep<T>(job: Job, name: Step, fn: (link: Link) => Promise<T>): Promise<T> {
  return job.session.step(name, fn, job.windDown, { deadline: job.windDown, once: true });
}

/**
 * Removes the job, and says whether it went. After a cancel it is one attempt within the margin;
 * otherwise it retries as any step, but the end of the wind-down still cuts it.
 */
async function removeQuietly(job: Job): Promise<boolean> {
  const remove = (link: Link): Promise<void> => link.steps.remove(job.jobId);
  const removing = job.signal.aborted ? windDownStep(job, 'cleanup', remove) : job.session.step('cleanup', remove, job.windDown, { deadline: job.windDown });
  return removing.then(
    () => true,
    () => false,
  );
}

/** The same cancel, with what the wind-down left undone as its hint. */
function noted(error: CancelledError, hint: string): CancelledError {
  const message = error.hint ? error.message.slice(0, error.message.length - `\n  hint: ${error.hint}`.length) : error.message;
  const copy = new CancelledError(message, {
    ...(error.host ? { host: error.host } : {}),
    ...(error.jobId ? { jobId: error.jobId } : {}),
    ...(error.step ? { step: error.step } : {}),
    hint: error.hint ? `${error.hint}; ${hint}` : hint,
    cause: error.cause,
  });
  copy.result = error.result;
  return copy;
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
