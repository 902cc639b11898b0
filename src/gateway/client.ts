/**
 * The client side of the gateway protocol: every verb over an open connection (and, for put, get
 * and take, the rsync bridge on it), each turned into a typed reply or a typed refusal. take's
 * handshake (the `sent` line, our answer, the `removed` line) lives in take() alone.
 */
import type { Connection } from '../connection/connect.js';
import { collect, execCollect, type ExecOptions, type ExecResult } from '../connection/exec.js';
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { CancelledError, GatewayError, IntegrityError, TransferError, type ErrorContext, type Step } from '../errors.js';
import { compareManifests, describeDifference, hashFiles, manifestDigest, parseManifestLine, sortManifest, type ManifestDifference, type ManifestEntry } from '../transfer/manifest.js';
import type { RshBridge } from '../transfer/rsh-bridge.js';
import { DOWNLOAD_MODULE } from '../transfer/rsync-args.js';
import type { Resources, SchedulerInfo } from '../types.js';
import { runRsync, type TransferProgress } from '../transfer/rsync.js';
import { hashLanded, InlineReceiver, InlineStreamError, type InlineUpload } from '../transfer/inline.js';
import {
  checkCompatible,
  formatCommand,
  formatRequest,
  parseList,
  plainArgs,
  parseLogTrailer,
  manifestLinePart,
  parseManifestEnd,
  type ManifestEnd,
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
  type Verb,
} from './protocol.js';

export interface TransferOptions {
  jobId: string;
  signal?: AbortSignal;
  onProgress?: (progress: TransferProgress) => void;
  /** Each file rsync wrote, as it is written (also for an attempt that fails later). */
  onFile?: (path: string) => void;
  rsyncPath?: string;
  /**
   * put: the inputs as one inline stream (transfer/inline.ts), sent with `putx` instead of rsync
   * where the gateway has it.
   */
  inline?: InlineUpload;
  /** get/take: try the results as one inline stream (`takex`) first; default true. */
  inlineResults?: boolean;
}

export interface TransferResult {
  /** Paths (relative to the destination): for a download every file of it, sent or already there unchanged; for an upload those sent. */
  files: string[];
  /** Symlinks the program left that point outside its work dir, not made here: `path -> target`. */
  skipped: string[];
  durationMs: number;
  /** take: the gateway removed the job after sending it. */
  removed: boolean;
  /** get/take: the manifest the gateway made of what it served, before sending it (none from a gateway before manifests). */
  served?: ServedManifest;
  /** get/take: the served files whose bytes here differ from `served`; empty when every one agrees (take then removed the job). */
  differences?: ManifestDifference[];
}

/** What a get/take served, as the gateway hashed it, and what it said beside it. */
export interface ServedManifest {
  entries: ManifestEntry[];
  /** The SHA-256 of the canonical text (the audit line's outputs=). */
  digest: string;
  gatewayVersion: string;
  /** The hash of the download's own audit line: the site's audit chain head as it left it. */
  auditHead: string | undefined;
}

/** What a job asks of the site's program beyond its arguments (startx/runx). */
export interface ProgramRequest {
  /** One of the site's named programs (`--program NAME=PATH`); default the site's `--program PATH`. */
  program?: string;
  /** Variables for names the site allows (`--allow-env`). */
  env?: Readonly<Record<string, string>>;
  /** What to ask of the site's batch scheduler (`--scheduler slurm` gateways only). */
  resources?: Resources;
  /**
   * The manifest of the inputs as sent: the gateway checks the work dir against its digest before
   * the program starts and refuses a difference (IntegrityError, side 'inputs').
   */
  inputs?: readonly ManifestEntry[];
  /**
   * run only: the inputs themselves, as one inline stream, sent in the same request (`jobx`: the
   * upload and the start in one exec); `inputs` must be their manifest.
   */
  inline?: InlineUpload;
}

function needsRequest(args: readonly string[], request: ProgramRequest): boolean {
  return (
    request.program !== undefined ||
    request.inputs !== undefined ||
    Object.keys(request.env ?? {}).length > 0 ||
    Object.keys(request.resources ?? {}).length > 0 ||
    !plainArgs(args)
  );
}

function requestBody(args: readonly string[], request: ProgramRequest): string {
  const { inputs, inline: _inline, ...rest } = request;
  return formatRequest({ ...rest, args, ...(inputs ? { manifest: manifestDigest(inputs) } : {}) });
}

/**
 * The manifest lines a gateway prints (a refused start, a download), collected whatever their
 * number: exec's and the bridge's stderr keep 64 KiB only.
 */
class ManifestReader {
  readonly entries: ManifestEntry[] = [];
  end: ManifestEnd | undefined;
  garbled = false;

  /** Takes the line if it is part of a manifest. */
  take = (line: string): boolean => {
    const part = manifestLinePart(line);
    if (part !== undefined) {
      const entry = parseManifestLine(part);
      if (entry) this.entries.push(entry);
      else this.garbled = true;
      return true;
    }
    const end = parseManifestEnd(line);
    if (!end) return false;
    this.end = end;
    return true;
  };

  /** The whole manifest, checked against its own end line; undefined when the gateway sent none. */
  result(context: ErrorContext): ServedManifest | undefined {
    if (!this.end) return undefined;
    const entries = sortManifest(this.entries);
    const digest = manifestDigest(entries);
    if (this.garbled || entries.length !== this.end.files || digest !== this.end.sha256) {
      throw new GatewayError('GATEWAY_PROTOCOL', `the gateway's manifest did not arrive whole (${entries.length} of ${this.end.files} lines, digest ${digest.slice(0, 12)}... for ${this.end.sha256.slice(0, 12)}...)`, context);
    }
    return { entries, digest, gatewayVersion: this.end.version, auditHead: this.end.auditHead === '-' ? undefined : this.end.auditHead };
  }
}

/**
 * What landed in `outputDir`, checked against what the gateway served: every served file here with
 * its bytes, and no regular file this download reported that the gateway did not hash.
 */
export async function checkLanded(outputDir: string, served: ServedManifest, received: readonly string[]): Promise<ManifestDifference[]> {
  const here = await hashFiles(
    served.entries.map((e) => ({ path: e.path, file: join(outputDir, e.path) })),
    { skipUnreadable: true },
  );
  const known = new Set(served.entries.map((e) => e.path));
  const others: { path: string; file: string }[] = [];
  for (const path of new Set(received)) {
    if (known.has(path)) continue;
    const info = await lstat(join(outputDir, path)).catch(() => undefined);
    if (info?.isFile()) others.push({ path, file: join(outputDir, path) });
  }
  return compareManifests(served.entries, [...here, ...(await hashFiles(others, { skipUnreadable: true }))]);
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

/** The start's refusal for its inputs, naming each file the site holds otherwise than it was sent. */
function inputsError(sent: readonly ManifestEntry[], reader: ManifestReader, refusal: GatewayError, context: ErrorContext): IntegrityError {
  let site: ServedManifest | undefined;
  try {
    site = reader.result(context);
  } catch {
    site = undefined;
  }
  const differences = site ? compareManifests(sent, site.entries) : [];
  const named = differences.slice(0, 5).map((d) => describeDifference(d, 'on the site', 'as sent'));
  const more = differences.length > 5 ? ` and ${differences.length - 5} more` : '';
  return new IntegrityError(
    'inputs',
    `the inputs on ${context.host ?? 'the site'} are not the bytes that were sent, so the program was not started${named.length > 0 ? `: ${named.join(', ')}${more}` : ` (${refusal.message})`}`,
    { ...context, step: 'start', differences, hint: `something on the external computer changed the job's files after the upload; the job stays there, never started, for a look (\`mint-ssh-exec rm ${context.host ?? 'HOST'} ${context.jobId ?? 'JOB'}\` removes it); a new job id uploads afresh` },
  );
}

/** The gateway's refusal of `verb` as one it does not know: a gateway from before the verb. */
function unknownVerb(error: unknown, verb: Verb): boolean {
  return error instanceof GatewayError && error.gatewayCode === 'E_USAGE' && error.message.includes(`unknown verb '${verb}'`);
}

/** How long a putx waits, in all, for an earlier attempt's upload (a dropped connection's gateway) to end. */
const PUTX_BUSY_MS = 3000;

export class GatewayClient {
  readonly connection: Connection;
  private readonly bridge: RshBridge | undefined;
  /** The gateway answered putx/takex as an unknown verb (one before inline streams): rsync only. */
  private noInline = false;

  /** `bridge` (the connection's rsync bridge) is needed for put, get and take only. */
  constructor(connection: Connection, bridge?: RshBridge) {
    this.connection = connection;
    this.bridge = bridge;
  }

  /**
   * Uploads local files and directories (absolute paths) into the job's work dir: as one inline
   * stream (`putx`) when `options.inline` holds them and the gateway has it, else with rsync.
   */
  async put(inputs: readonly string[], options: TransferOptions): Promise<TransferResult> {
    if (options.inline && !this.noInline) {
      const sent = await this.putInline(options.inline, options);
      if (sent) return sent;
    }
    // Absolute local paths: a relative name with a colon (a:b.dat) would otherwise read as host:path.
    return this.transfer('put', [...inputs, 'mint:work/'], options);
  }

  /**
   * Downloads the job's results into `outputDir`, with `remove` the job's removal once they are
   * here whole (take): inline (`takex`) when they are small and plain, else with rsync.
   */
  async fetch(outputDir: string, options: TransferOptions & { remove: boolean }): Promise<TransferResult> {
    if (options.inlineResults !== false && !this.noInline) {
      const got = await this.takeInline(outputDir, options);
      if (got) return got;
    }
    return options.remove ? this.take(outputDir, options) : this.get(outputDir, options);
  }

  /** putx; undefined when the gateway has no putx (rsync then). */
  private async putInline(upload: InlineUpload, options: TransferOptions): Promise<TransferResult | undefined> {
    const started = performance.now();
    const context = { host: this.connection.host.name, jobId: options.jobId, step: 'upload' as const };
    for (let waited = 0; ; waited += 100) {
      const result = await execCollect(this.connection, formatCommand({ verb: 'putx', job: options.jobId }), {
        stdin: upload.body,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (result.exitCode === 0) {
        for (const file of upload.files) options.onFile?.(file);
        options.onProgress?.({ direction: 'put', bytes: upload.body.length, percent: 100, rate: '', bytesPerSecond: undefined });
        return { files: upload.files, skipped: [], durationMs: performance.now() - started, removed: false };
      }
      const error = refusalError('putx', result.exitCode, result.stderr, context, result.signal);
      if (unknownVerb(error, 'putx')) {
        this.noInline = true;
        return undefined;
      }
      // The gateway of an attempt whose connection dropped may still be reading its stream: it ends
      // within moments of finding the channel gone.
      if (error.gatewayCode === 'E_STATE' && /an upload into job .* is running/.test(error.message) && waited < PUTX_BUSY_MS) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      throw await this.explained(error, context);
    }
  }

  /**
   * takex: the results inline, checked against the gateway's manifest before `remove` is
   * answered. undefined when they cannot come inline (E_INLINE: a symlink among them, or too big;
   * a gateway without takex; a stream that did not arrive whole and right): the job is then still
   * there, for rsync.
   */
  private async takeInline(outputDir: string, options: TransferOptions & { remove: boolean }): Promise<TransferResult | undefined> {
    const started = performance.now();
    const context = { host: this.connection.host.name, jobId: options.jobId, step: 'download' as const };
    const reader = new ManifestReader();
    const receiver = new InlineReceiver();
    const channel = await this.connection.exec(formatCommand({ verb: 'takex', job: options.jobId }));
    let sent: () => void = () => undefined;
    const sentLine = new Promise<'sent'>((resolve) => (sent = () => resolve('sent')));
    const ended = collect(this.connection, channel, {
      onStdout: receiver.feed,
      onStderrLine: (line) => {
        if (reader.take(line)) return;
        if (parseSentLine(line) !== undefined) sent();
      },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    // The stream's end and the `sent` line come on two pipes: both, or the channel's end.
    const first = await Promise.race([Promise.all([sentLine, receiver.whole]).then(() => 'sent' as const), ended.then(() => 'ended' as const, () => 'ended' as const)]);
    let files: string[] = [];
    let served: ServedManifest | undefined;
    let differences: ManifestDifference[] = [];
    let usable = first === 'sent';
    if (usable) {
      try {
        served = reader.result(context);
        files = await receiver.land(outputDir, options.onFile);
        // What landed, read back: only the paths this stream wrote (a served one it did not write is
        // `missing`, never read from wherever its name would lead).
        if (served) differences = compareManifests(served.entries, await hashLanded(outputDir, files));
      } catch (error) {
        if (!(error instanceof InlineStreamError || error instanceof GatewayError)) {
          channel.end();
          await ended.catch(() => undefined);
          throw error;
        }
        usable = false;
      }
    }
    // Only results that are here whole and right may go from the site.
    channel.end(usable && options.remove && served !== undefined && differences.length === 0 ? 'remove\n' : undefined);
    const result = await ended;
    if (!usable || result.exitCode !== 0) {
      if (result.exitCode === 0 || result.exitCode === undefined) return undefined;
      const error = refusalError('takex', result.exitCode, result.stderr, context, result.signal);
      if (error.gatewayCode === 'E_INLINE') return undefined;
      if (unknownVerb(error, 'takex')) {
        this.noInline = true;
        return undefined;
      }
      throw await this.explained(error, context);
    }
    const bytes = (served?.entries ?? []).reduce((n, e) => n + e.bytes, 0);
    options.onProgress?.({ direction: 'get', bytes, percent: 100, rate: '', bytesPerSecond: undefined });
    return {
      files,
      skipped: [],
      durationMs: performance.now() - started,
      removed: options.remove && tookAndRemoved(result.stderr, options.jobId),
      ...(served ? { served, differences } : {}),
    };
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
    // A download's manifest comes on stderr before rsync's first byte; what landed is checked
    // against it once rsync is done, and take's `remove` waits for that check.
    const reader = verb === 'put' ? undefined : new ManifestReader();
    const outputDir = paths.at(-1)!;
    const received: string[] = [];
    let served: ServedManifest | undefined;
    let differences: ManifestDifference[] | undefined;
    let checkError: unknown;
    const check = async (): Promise<void> => {
      try {
        served = reader!.result(context);
        if (served) differences = await checkLanded(outputDir, served, received);
      } catch (error) {
        checkError = error;
      }
    };
    const onFile = (path: string): void => {
      received.push(path);
      options.onFile?.(path);
    };
    const outcome = await runRsync({
      direction: verb === 'put' ? 'put' : 'get',
      paths,
      bridge: this.bridge,
      remoteCommand: (caps) => formatCommand(verb === 'put' ? { verb, job: options.jobId, caps } : { verb, job: options.jobId }),
      ...(verb === 'take'
        ? {
            endsOn: parseSentLine,
            reply: async (localOk: boolean) => {
              if (!localOk) return undefined;
              await check();
              // Only results that are here whole and right may go from the site.
              const whole = checkError === undefined && (served === undefined || differences?.length === 0);
              return whole ? 'remove\n' : undefined;
            },
          }
        : {}),
      ...(reader ? { consume: reader.take, onFile } : options.onFile ? { onFile: options.onFile } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
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
    if (verb === 'get') await check();
    if (checkError !== undefined) throw checkError;
    return {
      files: outcome.files,
      skipped: outcome.skipped,
      durationMs: outcome.durationMs,
      removed: verb === 'take' && tookAndRemoved(remote.stderr, options.jobId),
      ...(served ? { served, differences: differences ?? [] } : {}),
    };
  }

  private async call(command: GatewayCommand, step: Step): Promise<string> {
    return (await this.callFull(command, step)).stdout.toString('utf8');
  }

  private async callFull(command: GatewayCommand, step: Step, options: ExecOptions = {}, inputs?: readonly ManifestEntry[], greeting?: string): Promise<ExecResult> {
    const jobId = 'job' in command ? command.job : undefined;
    let context: ErrorContext = { host: this.connection.host.name, step, ...(jobId ? { jobId } : {}) };
    // A start refused for its inputs (E_INTEGRITY) prints the site's manifest: kept whole here.
    const reader = inputs ? new ManifestReader() : undefined;
    const onStderrLine = options.onStderrLine;
    const withReader = {
      ...options,
      ...(reader ? { onStderrLine: (line: string) => reader.take(line) || onStderrLine?.(line) } : {}),
    };
    let result: ExecResult;
    if (greeting === undefined) {
      result = await execCollect(this.connection, formatCommand(command), withReader);
    } else {
      const greeted = await this.greeted(command, greeting, withReader, context);
      result = greeted.result;
      // (jobx) A refusal before the upload's `put:` line is the upload's: nothing ran.
      if (!/^mint-gw: put: /m.test(result.stderr)) context = { ...context, step: 'upload' };
    }
    if (result.exitCode !== 0) {
      const error = refusalError(command.verb, result.exitCode, result.stderr, context, result.signal);
      if (inputs && error.gatewayCode === 'E_INTEGRITY') throw inputsError(inputs, reader!, error, context);
      if (inputs && error.gatewayCode === 'E_USAGE' && /request lines are/.test(error.message)) {
        throw new GatewayError('GATEWAY_INCOMPATIBLE', `the gateway cannot check the inputs' manifest (${error.message})`, {
          ...context,
          gatewayCode: 'E_USAGE',
          hint: 'the gateway on the external computer predates verified inputs: run `mint-gateway install` there again',
        });
      }
      throw await this.explained(error, context);
    }
    return result;
  }

  /**
   * An exec whose gateway greets first (jobx: `mint-job 1`): stdin is written only once the
   * greeting has come as the stream's very first bytes. Anything before it is the login shell's
   * (a banner), which would run into the program's log: the channel is then closed with nothing
   * sent (the gateway finds its stdin empty and refuses), and the error names the fix.
   */
  private async greeted(command: GatewayCommand, greeting: string, options: ExecOptions, context: ErrorContext): Promise<{ result: ExecResult }> {
    const { stdin, onStdout, ...rest } = options;
    const channel = await this.connection.exec(formatCommand(command));
    const expected = Buffer.from(greeting);
    let head = Buffer.alloc(0);
    let greeted = false;
    let noise: string | undefined;
    const result = await collect(this.connection, channel, {
      ...rest,
      onStdout: (chunk) => {
        if (greeted) return onStdout?.(chunk);
        if (noise !== undefined) return;
        head = Buffer.concat([head, chunk]);
        const at = head.indexOf(expected);
        if (at === 0) {
          greeted = true;
          channel.end(stdin);
          const after = head.subarray(expected.length);
          if (after.length > 0) onStdout?.(after);
          return;
        }
        // Bytes before the greeting (or 64 KiB without one): not the gateway's.
        if (at > 0 || head.length > 65536) {
          noise = head.subarray(0, at > 0 ? at : head.length).toString('utf8');
          channel.end();
        }
      },
    });
    // A channel that ended with bytes but no greeting: those were not the gateway's either.
    if (!greeted && head.length > 0) {
      throw shellNoiseError('the gateway\'s greeting does not start the stream', noise ?? head.toString('utf8'), { ...context, step: 'upload' });
    }
    return { result };
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
      const result = await this.callFull({ verb: 'startx', job }, 'start', { stdin: requestBody(args, request) }, request.inputs);
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
      const options = { onStdout: onChunk, onStderrLine, signal: stop.signal };
      let result: ExecResult | undefined;
      if (request.inline && !this.noInline) {
        // jobx: the request, then the inputs (mgw_read_job_request).
        const body = Buffer.from(requestBody(args, request));
        result = await this.callFull({ verb: 'jobx', job, length: body.length }, 'start', { ...options, stdin: Buffer.concat([body, request.inline.body]) }, request.inputs, 'mint-job 1\n').catch((error: unknown) => {
          if (!unknownVerb(error, 'jobx')) throw error;
          this.noInline = true;
          return undefined;
        });
      }
      // Without jobx (a gateway from before it): the inputs by themselves (rsync), then runx.
      if (!result && request.inline) await this.put(request.inline.inputs, { jobId: job, ...(signal ? { signal } : {}) });
      result ??= await this.callFull(
        extended ? { verb: 'runx', job } : { verb: 'run', job, args },
        'start',
        { ...options, ...(extended ? { stdin: requestBody(args, request) } : {}) },
        request.inputs,
      );
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
