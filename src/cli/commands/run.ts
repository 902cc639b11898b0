import { attach, runRemote } from '../../job/run-remote.js';
import type { RemoteResult, Resources } from '../../types.js';
import { CancelledError } from '../../errors.js';
import { appendMintLog, mintLogFields, mintLogPath } from '../mint-log.js';
import { progressReporter } from '../progress.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import { defineCommand, parseCommand, printHelp, usageError } from '../options.js';
import { printJson, type Io } from '../output.js';
import type { CleanupPolicy } from '../../config/resolved-host.js';
import { PROGRAM, configOption, hostArgument, jobArgument, ownExitCodes, withJsonErrors } from './common.js';

// Shared by run and attach, in the order their usage lists them.
const output = { type: 'string', short: 'o', value: 'DIR', description: 'where the results land (default: the current directory)' } as const;
const cleanup = {
  type: 'string',
  value: 'POLICY',
  description: "when to remove the remote job dir: always, on-success or never (default: the profile's, else on-success)",
} as const;
const timeout = { type: 'string', value: 'SEC', description: 'cancel the job after SEC seconds (counted from the start of this command); the command ends at most 2 s later' } as const;
const json = {
  type: 'boolean',
  description: 'print the result object as JSON on stdout instead of the remote log; on failure {"error": {code, exitCode, message, hint, step, host, jobId}}',
} as const;
const quiet = { type: 'boolean', short: 'q', description: 'print neither the remote log nor progress; failures are still reported' } as const;

export const runSpec = defineCommand({
  program: PROGRAM,
  name: 'run',
  brief: "run the site's program on a host with these input files and bring the results back",
  summary:
    "Send FILEs to a fresh job dir on HOST, run the site's program there, stream its log to stdout and bring " +
    "the results back: a drop-in for MInt's execute_remote_command.sh. Ctrl-C cancels the remote job.",
  positionals: [hostArgument, { name: '[FILE...]', description: "files or directories to send as the program's inputs (symlinks are followed)" }],
  options: {
    output,
    arg: { type: 'string', value: 'ARG', multiple: true, description: "an argument for the remote program, any UTF-8 text (1-4096 bytes), passed as it is: no shell, no ~ or $" },
    program: { type: 'string', value: 'NAME', description: "one of the site's named programs (mint-gateway install --program NAME=PATH)" },
    'wait-for-slot': { type: 'boolean', description: 'when the site is full (E_LIMIT), wait for a slot instead of failing (bounded by --timeout)' },
    env: { type: 'string', value: 'NAME=VALUE', multiple: true, description: "a variable for the program, for a name the site allows (mint-gateway install --allow-env)" },
    cpus: { type: 'string', value: 'N', description: "CPUs to ask of the site's batch scheduler (sites with mint-gateway install --scheduler)" },
    memory: { type: 'string', value: 'MB', description: "memory (MB) to ask of the site's batch scheduler" },
    walltime: { type: 'string', value: 'MIN', description: "walltime (minutes) to ask of the site's batch scheduler" },
    cleanup,
    timeout,
    json,
    quiet,
    'mint-log': {
      type: 'string',
      value: 'PATH',
      description: "append MInt's start/end lines to this solver_execute.log (its directory must exist; none by default)",
    },
    'mint-log-site': {
      type: 'boolean',
      description: "append them to MInt's own solver_execute.log for $MISYSTEM_SITEID (under /home/misystem/assets/workflow/)",
    },
    'mint-log-format': {
      type: 'string',
      value: 'FORMAT',
      description: "workflow (workflow_lib's line, the default) or template (the remote-side templates' %Y-%m-%d %T: EVENT: SOLVER: unknown)",
    },
    solver: { type: 'string', value: 'NAME', description: 'the solver named in those log lines (default: remote)' },
    'job-id': { type: 'string', value: 'UUID', description: 'use this job id (a lowercase UUID) instead of a fresh one' },
    config: configOption,
  },
  notes: [
    `exit status: the remote program's own; 2 is a usage error, and mint-ssh-exec's own failures are ${ownExitCodes()}`,
    'environment: MINT_USER_ID, MINT_SOLVER_UUID, MINT_RUN_ID, MINT_WORKFLOW_ID fill the MInt log lines',
  ],
});

export const attachSpec = defineCommand({
  program: PROGRAM,
  name: 'attach',
  brief: 'follow a job started earlier to its end and bring its results back',
  summary: "Pick up a job started earlier by run: follow it to its end, stream its log and bring the results back; exits with the program's status like run.",
  positionals: [hostArgument, jobArgument],
  options: { output, cleanup, timeout, json, quiet, config: configOption },
});

export async function runCommand(args: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseCommand(runSpec, args);
  if (values.help) return printHelp(io, runSpec);
  return withJsonErrors(io, Boolean(values.json), async () => {
    const [host, ...files] = positionals;
    if (!host) throw usageError(runSpec);
    const jobId = values['job-id'] ?? crypto.randomUUID();
    const logPath = mintLogPath(values['mint-log'], Boolean(values['mint-log-site']), io.env);
    const logFormat = values['mint-log-format'] ?? 'workflow';
    if (logFormat !== 'workflow' && logFormat !== 'template') throw usageError(runSpec, `--mint-log-format must be workflow or template, got ${JSON.stringify(logFormat)}`);
    const fields = mintLogFields(values.solver ?? 'remote', jobId, io.env);
    if (logPath) await appendMintLog(logPath, 'start', fields, logFormat);
    // Known before anything is sent: after a crash of this process, `attach HOST JOB` picks it up.
    io.stderr.write(`mint-ssh-exec: job ${jobId} on ${host} (if this process dies: mint-ssh-exec attach ${host} ${jobId})\n`);
    const progress = progressReporter(io, { quiet: Boolean(values.quiet), streamLog: !values.json && !values.quiet });
    let result: RemoteResult | undefined;
    try {
      result = await runRemote({
        host,
        inputs: files,
        jobId,
        ...shared(values, signal),
        ...(values.arg ? { args: values.arg } : {}),
        ...(values.program !== undefined ? { program: values.program } : {}),
        ...(values['wait-for-slot'] ? { waitForSlot: true } : {}),
        ...(values.env ? { env: envOption(values.env, runSpec) } : {}),
        ...resourceOptions(values),
        onEvent: progress.onEvent,
      });
      return report(io, result, Boolean(values.json));
    } catch (error) {
      if (error instanceof CancelledError && error.result) result = error.result as RemoteResult;
      throw error;
    } finally {
      progress.stop();
      // The end line must not hide the job's own outcome: a log that cannot be written is a warning.
      if (logPath) {
        await appendMintLog(logPath, result && !result.failed ? 'normal end' : 'abnormal end', fields, logFormat).catch((error: unknown) =>
          io.stderr.write(`mint-ssh-exec: warning: ${error instanceof Error ? error.message : String(error)}\n`),
        );
      }
    }
  });
}

export async function attachCommand(args: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseCommand(attachSpec, args);
  if (values.help) return printHelp(io, attachSpec);
  return withJsonErrors(io, Boolean(values.json), async () => {
    const [host, jobId] = positionals;
    if (!host || !jobId) throw usageError(attachSpec);
    const progress = progressReporter(io, { quiet: Boolean(values.quiet), streamLog: !values.json && !values.quiet });
    try {
      const result = await attach({ host, jobId, ...shared(values, signal), onEvent: progress.onEvent });
      return report(io, result, Boolean(values.json));
    } finally {
      progress.stop();
    }
  });
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
  // Never silently: a symlink the program left that points outside its work dir is not made here.
  for (const link of result.skipped) io.stderr.write(`mint-ssh-exec: not brought back (a symlink pointing outside the job): ${link}\n`);
  if (json) printJson(io, result);
  else if (result.failed) {
    io.stderr.write(`remote program ${result.state === 'exited' ? `exited with code ${result.exitCode}` : `ended as ${result.state}`} (job ${result.jobId})\n`);
  }
  if (result.state === 'exited' && result.exitCode !== undefined) return result.exitCode;
  return result.cancelled ? ExitCode.CANCELLED : ExitCode.FAILED;
}

/** `--cpus`, `--memory`, `--walltime` into runRemote's resources (whole numbers from 1). */
function resourceOptions(values: { cpus?: string | undefined; memory?: string | undefined; walltime?: string | undefined }): { resources?: Resources } {
  const resources: Resources = {};
  for (const [flag, key, value] of [['--cpus', 'cpus', values.cpus], ['--memory', 'memoryMb', values.memory], ['--walltime', 'walltimeMinutes', values.walltime]] as const) {
    if (value === undefined) continue;
    if (!/^[1-9]\d{0,8}$/.test(value)) throw usageError(runSpec, `${flag} takes a whole number from 1, got ${JSON.stringify(value)}`);
    resources[key] = Number(value);
  }
  return Object.keys(resources).length > 0 ? { resources } : {};
}

/** `--env NAME=VALUE` (repeatable) into an object; a later NAME wins. */
function envOption(assignments: readonly string[], spec: typeof runSpec): Record<string, string> {
  const env: Record<string, string> = {};
  for (const assignment of assignments) {
    const eq = assignment.indexOf('=');
    if (eq < 1) throw usageError(spec, `--env takes NAME=VALUE, got ${JSON.stringify(assignment)}`);
    env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
  }
  return env;
}
