/** One-off verbs on a host's jobs: list and cancel (for `jobs` and `cancel`). */
import { resolveHost, type InlineHost, type ResolveOptions } from '../config/resolve-host.js';
import { checkJobId, type JobListing, type JobStatus } from '../gateway/protocol.js';
import { JobSession } from './job-session.js';

export async function listJobs(host: string | InlineHost, options: ResolveOptions = {}): Promise<JobListing[]> {
  const session = new JobSession(await resolveHost(host, options), options, () => undefined);
  try {
    return await session.step('probe', (link) => link.steps.list());
  } finally {
    await session.drop();
  }
}

/** Stops the job's whole process group on the remote side (TERM, then KILL after the grace time). */
export async function cancelJob(host: string | InlineHost, jobId: string, options: ResolveOptions = {}): Promise<JobStatus> {
  checkJobId(jobId);
  const session = new JobSession(await resolveHost(host, options), options, () => undefined);
  try {
    return await session.step('run', (link) => link.steps.cancel(jobId));
  } finally {
    await session.drop();
  }
}
