/** Gateway verbs over an open connection, each turned into a typed reply or a typed refusal. */
import type { Connection } from '../connection/connect.js';
import { execCollect, type ExecOptions, type ExecResult } from '../connection/exec.js';
import {
  checkCompatible,
  formatCommand,
  parseList,
  parseLogTrailer,
  parseStartedLine,
  parseProbe,
  parseStatus,
  refusalError,
  type GatewayCommand,
  type JobListing,
  type JobState,
  type JobStatus,
  type ProbeReport,
} from '../gateway/protocol.js';
import type { Step } from '../errors.js';

export class GatewayClient {
  readonly connection: Connection;

  constructor(connection: Connection) {
    this.connection = connection;
  }

  private async call(command: GatewayCommand, step: Step): Promise<string> {
    return (await this.callFull(command, step)).stdout.toString('utf8');
  }

  private async callFull(command: GatewayCommand, step: Step, options: ExecOptions = {}): Promise<ExecResult> {
    const jobId = 'job' in command ? command.job : undefined;
    const context = { host: this.connection.host.name, step, ...(jobId ? { jobId } : {}) };
    const result = await execCollect(this.connection, formatCommand(command), options);
    if (result.exitCode !== 0) throw refusalError(command.verb, result.exitCode, result.stderr, context, result.signal);
    return result;
  }

  async probe(): Promise<ProbeReport> {
    const report = parseProbe(await this.call({ verb: 'probe' }, 'probe'), { host: this.connection.host.name, step: 'probe' });
    checkCompatible(report, { host: this.connection.host.name, step: 'probe' });
    return report;
  }

  async start(job: string, args: readonly string[]): Promise<JobStatus> {
    return parseStatus(await this.call({ verb: 'start', job, args }, 'start'), { host: this.connection.host.name, jobId: job });
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
  ): Promise<{ state: JobState; exitCode: number | undefined }> {
    // A cancel is held back until the gateway has reported the start: closing the channel earlier
    // could let the start land after the caller's `cancel` found no job to stop.
    let started = false;
    const stop = new AbortController();
    const onAbort = (): void => {
      if (started) stop.abort(signal?.reason);
    };
    const onStderrLine = (line: string): void => {
      const report = parseStartedLine(line);
      if (!report) return;
      started = true;
      onStarted(report);
      if (signal?.aborted) stop.abort(signal.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const result = await this.callFull({ verb: 'run', job, args }, 'start', { onStdout: onChunk, onStderrLine, signal: stop.signal });
      return parseLogTrailer(result.stderr) ?? (await this.status(job));
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
  ): Promise<{ state: JobState; exitCode: number | undefined }> {
    const result = await this.callFull({ verb: 'logs', job, offset }, 'run', { onStdout: onChunk, ...(signal ? { signal } : {}) });
    return parseLogTrailer(result.stderr) ?? (await this.status(job));
  }

  async cancel(job: string): Promise<JobStatus> {
    return parseStatus(await this.call({ verb: 'cancel', job }, 'run'), { host: this.connection.host.name, jobId: job });
  }

  async remove(job: string): Promise<void> {
    await this.call({ verb: 'rm', job }, 'cleanup');
  }

  async list(): Promise<JobListing[]> {
    return parseList(await this.call({ verb: 'list' }, 'probe'));
  }
}
