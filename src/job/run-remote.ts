/**
 * runRemote: one job, start to finish, on one SSH connection. The life of a job, in order:
 * resolve host -> connect + probe -> upload -> start -> follow log until exit -> download -> cleanup.
 * A program that exits non-zero is a result, not an exception (unless throwOnFailure).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { CancelledError, InputError, MintSshError, type Step } from '../errors.js';
import { resolveHost, resolveJump, type InlineHost, type ResolveOptions } from '../config/resolve-host.js';
import type { CleanupPolicy, ResolvedHost } from '../config/resolved-host.js';
import { connect, type Connection } from '../connection/connect.js';
import { checkProgramArgs, isJobId, type JobState } from '../gateway/protocol.js';
import { RshBridge } from '../transfer/rsh-bridge.js';
import { checkInputs, download, upload } from '../transfer/rsync.js';
import type { RemoteResult } from '../result/result.js';
import { GatewayClient } from './gateway-client.js';
import type { EventListener } from './events.js';
import { RemoteJobError } from './remote-job-error.js';

export const LOG_NAME = 'remote_program_exec.log';

export interface RunRemoteOptions {
  /** A profile name, an ~/.ssh/config alias, or an inline profile. */
  host: string | InlineHost;
  /** Files or directories to send; symlinks are followed (MInt hands modules symlinks). */
  inputs?: readonly string[];
  /** Where results land; default the current directory. */
  outputDir?: string;
  /** Arguments for the remote program (1-255 chars each of A-Za-z0-9._,:=+@%-). */
  args?: readonly string[];
  /** Remove the remote job dir: always, only after success (default), or never. */
  cleanup?: CleanupPolicy;
  /** Throw RemoteJobError when the program fails, instead of returning the result. */
  throwOnFailure?: boolean;
  /** Use this job id (a lowercase UUID) instead of a fresh one. */
  jobId?: string;
  configFile?: string;
  signal?: AbortSignal;
  onEvent?: EventListener;
}

export async function runRemote(options: RunRemoteOptions): Promise<RemoteResult> {
  const started = performance.now();
  const jobId = options.jobId ?? randomUUID();
  if (!isJobId(jobId)) throw new InputError(`jobId ${JSON.stringify(jobId)} is not a lowercase UUID`, { step: 'config' });
  const argsProblem = checkProgramArgs(options.args ?? []);
  if (argsProblem) throw new InputError(argsProblem, { step: 'config', jobId });
  const resolveOptions: ResolveOptions = options.configFile ? { configFile: options.configFile } : {};
  const host = await resolveHost(options.host, resolveOptions);
  const context = { host: host.name, jobId };
  const inputs = await checkInputs(options.inputs ?? [], context);
  const outputDir = resolve(options.outputDir ?? '.');
  const cleanup = options.cleanup ?? host.cleanup;
  const emit: EventListener = options.onEvent ?? (() => undefined);
  const timings = { connectMs: 0, uploadMs: 0, runMs: 0, downloadMs: 0, cleanupMs: 0, totalMs: 0 };

  let step: Step = 'connect';
  let connection: Connection | undefined;
  let bridge: RshBridge | undefined;
  try {
    throwIfAborted(options.signal, context);
    emit({ type: 'connecting', host: host.name, attempt: 1 });
    const t0 = performance.now();
    connection = await openConnection(host, resolveOptions, options.signal);
    // No probe round trip: every gateway reply carries its protocol version, and a host without a
    // gateway fails the first verb with a hint (see refusalError).
    const gateway = new GatewayClient(connection);
    timings.connectMs = performance.now() - t0;
    emit({ type: 'connected', host: host.name, ms: timings.connectMs });

    step = 'upload';
    bridge = await RshBridge.open(connection);
    if (inputs.length > 0) {
      const up = await upload(inputs, {
        bridge,
        host: host.name,
        jobId,
        ...(options.signal ? { signal: options.signal } : {}),
        onProgress: (p) => emit({ type: 'uploading', bytes: p.bytes, percent: p.percent, rate: p.rate }),
      });
      timings.uploadMs = up.durationMs;
      emit({ type: 'uploaded', files: up.files.length, ms: up.durationMs });
    }

    step = 'start';
    throwIfAborted(options.signal, context);
    const t1 = performance.now();
    const status = await gateway.start(jobId, options.args ?? []);
    emit({ type: 'started', jobId, pid: status.pid });

    step = 'run';
    const { log, final } = await followLog(gateway, jobId, emit, options.signal);
    timings.runMs = performance.now() - t1;
    emit({ type: 'exited', exitCode: final.exitCode, state: final.state });

    step = 'download';
    await mkdir(outputDir, { recursive: true });
    const down = await download(outputDir, {
      bridge,
      host: host.name,
      jobId,
      ...(options.signal ? { signal: options.signal } : {}),
      onProgress: (p) => emit({ type: 'downloading', bytes: p.bytes, percent: p.percent, rate: p.rate }),
    });
    timings.downloadMs = down.durationMs;
    emit({ type: 'downloaded', files: down.files.length, ms: down.durationMs });
    await writeAtomically(join(outputDir, LOG_NAME), log);

    const failed = final.state !== 'exited' || final.exitCode !== 0;
    step = 'cleanup';
    const t3 = performance.now();
    let cleanedUp = false;
    if (cleanup === 'always' || (cleanup === 'on-success' && !failed)) {
      await gateway.remove(jobId);
      cleanedUp = true;
    }
    timings.cleanupMs = performance.now() - t3;
    emit({ type: 'cleaned-up', removed: cleanedUp });
    timings.totalMs = performance.now() - started;

    const result: RemoteResult = {
      host: host.name,
      jobId,
      exitCode: final.exitCode,
      state: final.state,
      failed,
      cancelled: final.state === 'cancelled',
      log: log.toString('utf8'),
      files: down.files,
      outputDir,
      cleanedUp,
      timings,
    };
    emit({ type: 'done', result });
    if (failed && options.throwOnFailure) throw new RemoteJobError(result);
    return result;
  } catch (error) {
    if (error instanceof MintSshError) {
      error.step ??= step;
      error.jobId ??= jobId;
    }
    // A job that never started leaves only inputs behind: remove them unless told to keep things.
    if (connection && !connection.closed && cleanup === 'always' && (step === 'upload' || step === 'start')) {
      await new GatewayClient(connection).remove(jobId).catch(() => undefined);
    }
    throw error;
  } finally {
    await bridge?.close();
    connection?.close();
  }
}

export async function openConnection(host: ResolvedHost, resolveOptions: ResolveOptions, signal?: AbortSignal): Promise<Connection> {
  return connect(host, {
    ...(signal ? { signal } : {}),
    resolveJump: (spec) => resolveJump(spec, resolveOptions),
  });
}

async function followLog(
  gateway: GatewayClient,
  jobId: string,
  emit: EventListener,
  signal: AbortSignal | undefined,
): Promise<{ log: Buffer; final: { state: JobState; exitCode: number | undefined } }> {
  const chunks: Buffer[] = [];
  const decoder = new StringDecoder('utf8');
  const abort = new Promise<never>((_, reject) => {
    signal?.addEventListener('abort', () => reject(new CancelledError('job cancelled by the caller', { jobId, step: 'run' })), { once: true });
  });
  abort.catch(() => undefined);
  const final = await Promise.race([
    gateway.logs(jobId, 0, (chunk) => {
      chunks.push(chunk);
      const text = decoder.write(chunk);
      if (text) emit({ type: 'log', text });
    }),
    abort,
  ]);
  const rest = decoder.end();
  if (rest) emit({ type: 'log', text: rest });
  return { log: Buffer.concat(chunks), final };
}

function throwIfAborted(signal: AbortSignal | undefined, context: { host: string; jobId: string }): void {
  if (signal?.aborted) throw new CancelledError('job cancelled by the caller', context);
}

/** Never a half-written file: write beside, then rename. */
async function writeAtomically(path: string, data: Buffer): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

export type { JobState };
