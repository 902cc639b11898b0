/**
 * A remote job's steps, whatever carries them to the external computer: put the inputs, start the
 * program, follow its log from a byte offset, read its status, cancel it, fetch its results, remove
 * it. runRemote, attach, listJobs and cancelJob use nothing else. The SSH gateway (one connection,
 * gateway/client.ts) is the first implementation, sshJobSteps below; pull mode over HTTPS is meant
 * to be the second. Every step must be safe to repeat after a dropped link (JobSession.step retries
 * them): resumable transfers, a start that never runs the program twice, offsets for the log, a
 * removal of a missing job that succeeds.
 */
import type { GatewayClient, ProgramRequest, TransferOptions, TransferResult } from '../gateway/client.js';
import type { JobListing, JobState, JobStatus } from '../gateway/protocol.js';
import type { SchedulerInfo } from '../types.js';

/** How a program ended, as the step that saw its end reports it (and its scheduler, if one ran it). */
export interface Final {
  state: JobState;
  exitCode: number | undefined;
  scheduler?: SchedulerInfo;
}

/** Hears each change of a batch scheduler's state for the job (pending and why, running...). */
export type OnSched = (sched: SchedulerInfo) => void;

/** A transfer's options, the job aside. */
export type TransferRun = Omit<TransferOptions, 'jobId'>;

export interface JobSteps {
  /**
   * Whether startAndFollow can carry small inputs itself (`request.inline`: the SSH gateway's
   * jobx), sparing the upload its own round trip; otherwise they go by putInputs first.
   */
  readonly inputsWithStart: boolean;
  putInputs(jobId: string, inputs: readonly string[], options: TransferRun): Promise<TransferResult>;
  start(jobId: string, args: readonly string[], request?: ProgramRequest): Promise<JobStatus>;
  /** start, then followLog from byte 0: one round trip where the transport allows it. */
  startAndFollow(
    jobId: string,
    args: readonly string[],
    onStarted: (started: { state: JobState; pid: number | undefined }) => void,
    onChunk: (chunk: Buffer) => void,
    signal?: AbortSignal,
    request?: ProgramRequest,
    onSched?: OnSched,
  ): Promise<Final>;
  /** The log from `offset` until the program has ended and every byte is out. */
  followLog(jobId: string, offset: number, onChunk: (chunk: Buffer) => void, signal?: AbortSignal, onSched?: OnSched): Promise<Final>;
  status(jobId: string): Promise<JobStatus>;
  /** `onDelivered`: the request has reached the site, which stops the job even if nobody waits for the reply. */
  cancel(jobId: string, onDelivered?: () => void): Promise<JobStatus>;
  /** With `remove`, the job goes once every result is safely here (`removed` says it went). */
  fetchResults(jobId: string, outputDir: string, options: TransferRun & { remove: boolean }): Promise<TransferResult>;
  remove(jobId: string): Promise<void>;
  list(): Promise<JobListing[]>;
}

/** The steps over the SSH gateway: put/run/take, and start/logs/status/cancel/rm/list. */
export function sshJobSteps(gateway: GatewayClient): JobSteps {
  return {
    inputsWithStart: true,
    putInputs: (jobId, inputs, options) => gateway.put(inputs, { ...options, jobId }),
    start: (jobId, args, request) => gateway.start(jobId, args, request),
    startAndFollow: (jobId, args, onStarted, onChunk, signal, request, onSched) => gateway.run(jobId, args, onStarted, onChunk, signal, request, onSched),
    followLog: (jobId, offset, onChunk, signal, onSched) => gateway.logs(jobId, offset, onChunk, signal, onSched),
    status: (jobId) => gateway.status(jobId),
    cancel: (jobId, onDelivered) => gateway.cancel(jobId, onDelivered),
    fetchResults: (jobId, outputDir, options) => gateway.fetch(outputDir, { ...options, jobId }),
    remove: (jobId) => gateway.remove(jobId),
    list: () => gateway.list(),
  };
}
