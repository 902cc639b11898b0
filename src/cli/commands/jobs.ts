import { parseArgs } from 'node:util';
import { cancelJob, listJobs } from '../../job/manage.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import { printJson, type Io } from '../output.js';

export const jobsUsage = 'mint-ssh-exec jobs HOST [--json] [--config FILE]';
export const cancelUsage = 'mint-ssh-exec cancel HOST JOB [--json] [--config FILE]';

export async function jobsCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' }, config: { type: 'string' } } });
  if (positionals.length !== 1) throw new UsageError(`usage: ${jobsUsage}`);
  const jobs = await listJobs(positionals[0]!, values.config ? { configFile: values.config } : {});
  if (values.json) printJson(io, { host: positionals[0], jobs });
  else if (jobs.length === 0) io.stdout.write('no jobs\n');
  else for (const job of jobs) io.stdout.write(`${job.jobId}  ${job.state}${job.exitCode === undefined ? '' : ` (exit ${job.exitCode})`}\n`);
  return ExitCode.OK;
}

export async function cancelCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' }, config: { type: 'string' } } });
  if (positionals.length !== 2) throw new UsageError(`usage: ${cancelUsage}`);
  const status = await cancelJob(positionals[0]!, positionals[1]!, values.config ? { configFile: values.config } : {});
  if (values.json) printJson(io, status);
  else io.stdout.write(`${status.jobId}  ${status.state}${status.exitCode === undefined ? '' : ` (exit ${status.exitCode})`}\n`);
  return ExitCode.OK;
}
