import { parseArgs } from 'node:util';
import { attach, runRemote } from '../../job/run-remote.js';
import type { RemoteResult } from '../../job/result.js';
import { CancelledError } from '../../errors.js';
import { appendMintLog, mintLogFields, mintLogPath } from '../mint-log.js';
import { progressReporter } from '../progress.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import { printJson, type Io } from '../output.js';
import type { CleanupPolicy } from '../../config/resolved-host.js';

export const runUsage =
  'mint-ssh-exec run HOST FILE... [-o DIR] [--arg ARG]... [--cleanup always|on-success|never] [--timeout SEC] [--json] [--quiet] [--mint-log PATH] [--solver NAME] [--config FILE]';
export const attachUsage = 'mint-ssh-exec attach HOST JOB [-o DIR] [--cleanup POLICY] [--json] [--quiet] [--config FILE]';

const common = {
  output: { type: 'string', short: 'o' },
  cleanup: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  config: { type: 'string' },
} as const;

export async function runCommand(args: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...common, arg: { type: 'string', multiple: true }, 'mint-log': { type: 'string' }, solver: { type: 'string' }, 'job-id': { type: 'string' } },
  });
  const [host, ...files] = positionals;
  if (!host) throw new UsageError(`usage: ${runUsage}`);
  const jobId = values['job-id'] ?? crypto.randomUUID();
  const logPath = mintLogPath(values['mint-log'], io.env);
  const fields = mintLogFields(values.solver ?? 'remote', jobId, io.env);
  if (logPath) await appendMintLog(logPath, 'start', fields);
  const progress = progressReporter(io, { quiet: Boolean(values.quiet), streamLog: !values.json && !values.quiet });
  let result: RemoteResult | undefined;
  try {
    result = await runRemote({
      host,
      inputs: files,
      jobId,
      ...shared(values, signal),
      ...(values.arg ? { args: values.arg } : {}),
      onEvent: progress.onEvent,
    });
    return report(io, result, Boolean(values.json));
  } catch (error) {
    if (error instanceof CancelledError && error.result) result = error.result as RemoteResult;
    throw error;
  } finally {
    progress.stop();
    if (logPath) await appendMintLog(logPath, result && !result.failed ? 'normal end' : 'abnormal end', fields);
  }
}

export async function attachCommand(args: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: common });
  const [host, jobId] = positionals;
  if (!host || !jobId || positionals.length > 2) throw new UsageError(`usage: ${attachUsage}`);
  const progress = progressReporter(io, { quiet: Boolean(values.quiet), streamLog: !values.json && !values.quiet });
  try {
    const result = await attach({ host, jobId, ...shared(values, signal), onEvent: progress.onEvent });
    return report(io, result, Boolean(values.json));
  } finally {
    progress.stop();
  }
}

function shared(
  values: { output?: string; cleanup?: string; timeout?: string; config?: string },
  signal: AbortSignal,
): { outputDir?: string; cleanup?: CleanupPolicy; timeoutMs?: number; configFile?: string; signal: AbortSignal } {
  if (values.cleanup !== undefined && !['always', 'on-success', 'never'].includes(values.cleanup)) {
    throw new UsageError('--cleanup must be always, on-success or never');
  }
  let timeoutMs: number | undefined;
  if (values.timeout !== undefined) {
    const seconds = Number(values.timeout);
    if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError('--timeout takes a number of seconds');
    timeoutMs = seconds * 1000;
  }
  return {
    signal,
    ...(values.output ? { outputDir: values.output } : {}),
    ...(values.cleanup ? { cleanup: values.cleanup as CleanupPolicy } : {}),
    ...(timeoutMs ? { timeoutMs } : {}),
    ...(values.config ? { configFile: values.config } : {}),
  };
}

/** Like MInt's execute_remote_command.sh: the remote program's exit status is ours. */
function report(io: Io, result: RemoteResult, json: boolean): number {
  if (json) printJson(io, result);
  else if (result.failed) {
    io.stderr.write(`remote program ${result.state === 'exited' ? `exited with code ${result.exitCode}` : `ended as ${result.state}`} (job ${result.jobId})\n`);
  }
  if (result.state === 'exited' && result.exitCode !== undefined) return result.exitCode;
  return result.cancelled ? ExitCode.CANCELLED : ExitCode.FAILED;
}
