import { cancelJob, listJobs, removeJob } from '../../job/manage.js';
import { ExitCode } from '../exit-codes.js';
import { defineCommand, parseCommand, printHelp, usageError } from '../options.js';
import { printJson, type Io } from '../output.js';
import { formatBytes } from '../progress.js';
import { PROGRAM, configOption, hostArgument, jobArgument, withJsonErrors } from './common.js';

export const jobsSpec = defineCommand({
  program: PROGRAM,
  name: 'jobs',
  brief: "list a host's jobs and their states",
  summary:
    "List the jobs in HOST's job root: each one's state (and exit code once ended), its age (since its dir last " +
    'changed: its start, its end) and its size on the site (du of its dir).',
  positionals: [hostArgument],
  options: {
    json: { type: 'boolean', description: 'print the host and its jobs as JSON on stdout' },
    config: configOption,
  },
});

export const cancelSpec = defineCommand({
  program: PROGRAM,
  name: 'cancel',
  brief: 'cancel a running job',
  summary: "Cancel a job on HOST: the remote program's whole process group gets TERM, then KILL after the gateway's grace time. A run or attach following it then ends as cancelled.",
  positionals: [hostArgument, jobArgument],
  options: {
    json: { type: 'boolean', description: "print the job's status as JSON on stdout" },
    config: configOption,
  },
});

export const rmSpec = defineCommand({
  program: PROGRAM,
  name: 'rm',
  brief: "remove a job's dir on a host (its inputs, results and log)",
  summary:
    "Remove JOB's dir on HOST: its inputs, results and log. A running job is refused (exit 205, E_STATE): cancel it " +
    'first. A job that is not there (already removed) is no error: rm says so and exits 0.',
  positionals: [hostArgument, jobArgument],
  options: {
    json: { type: 'boolean', description: 'print {host, jobId, removed, state, exitCode} as JSON on stdout (removed: whether the job was there)' },
    config: configOption,
  },
});

export async function jobsCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommand(jobsSpec, args);
  if (values.help) return printHelp(io, jobsSpec);
  return withJsonErrors(io, Boolean(values.json), async () => {
    const [host] = positionals;
    if (!host) throw usageError(jobsSpec);
    const jobs = await listJobs(host, values.config ? { configFile: values.config } : {});
    if (values.json) printJson(io, { host, jobs });
    else if (jobs.length === 0) io.stdout.write('no jobs\n');
    else {
      for (const job of jobs) {
        const state = `${job.state}${job.exitCode === undefined ? '' : ` (exit ${job.exitCode})`}`;
        const usage = job.ageSeconds === undefined && job.sizeKiB === undefined ? '' : `  ${formatAge(job.ageSeconds).padStart(6)}  ${(job.sizeKiB === undefined ? '?' : formatBytes(job.sizeKiB * 1024)).padStart(10)}`;
        io.stdout.write(`${job.jobId}  ${usage ? state.padEnd(20) : state}${usage}\n`);
      }
    }
    return ExitCode.OK;
  });
}

export async function cancelCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommand(cancelSpec, args);
  if (values.help) return printHelp(io, cancelSpec);
  return withJsonErrors(io, Boolean(values.json), async () => {
    const [host, jobId] = positionals;
    if (!host || !jobId) throw usageError(cancelSpec);
    const status = await cancelJob(host, jobId, values.config ? { configFile: values.config } : {});
    if (values.json) printJson(io, status);
    else io.stdout.write(`${status.jobId}  ${status.state}${status.exitCode === undefined ? '' : ` (exit ${status.exitCode})`}\n`);
    return ExitCode.OK;
  });
}

export async function rmCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommand(rmSpec, args);
  if (values.help) return printHelp(io, rmSpec);
  return withJsonErrors(io, Boolean(values.json), async () => {
    const [host, jobId] = positionals;
    if (!host || !jobId) throw usageError(rmSpec);
    const before = await removeJob(host, jobId, values.config ? { configFile: values.config } : {});
    if (values.json) {
      printJson(io, { host, jobId, removed: before !== undefined, ...(before ? { state: before.state, ...(before.exitCode === undefined ? {} : { exitCode: before.exitCode }) } : {}) });
    } else if (before) {
      io.stdout.write(`${jobId}  removed (was ${before.state}${before.exitCode === undefined ? '' : `, exit ${before.exitCode}`})\n`);
    } else {
      io.stdout.write(`${jobId}  not on ${host} (nothing to remove)\n`);
    }
    return ExitCode.OK;
  });
}

/** 42s, 17m, 2h5m, 3d4h: the two largest units, enough to tell a fresh job from a forgotten one. */
function formatAge(seconds: number | undefined): string {
  if (seconds === undefined) return '?';
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d${hours % 24}h`;
}
