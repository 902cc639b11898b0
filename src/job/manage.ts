/** One-off verbs on a host's jobs: list, cancel and remove (for `jobs`, `cancel` and `rm`). */
import { resolveHost, type InlineHost, type ResolveOptions } from '../config/resolve-host.js';
import type { ResolvedHost } from '../config/resolved-host.js';
import { issueJobCredential, SHORT_CERTIFICATE_MS } from '../connection/cert-authority.js';
import { GatewayError } from '../errors.js';
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
  const session = new JobSession(await forJob(await resolveHost(host, options), jobId), options, () => undefined);
  try {
    return await session.step('run', (link) => link.steps.cancel(jobId));
  } finally {
    await session.drop();
  }
}

/**
 * Removes a job's dir on the remote side, inputs, results and log. Resolves with the job's status as
 * it was just before (undefined when there was no such job: removing it again is a no-op, as the
 * gateway's `rm` of a missing job succeeds). A running job is refused by the gateway (GatewayError,
 * gatewayCode E_STATE: cancel it first), under the same lock as `start`, so a job that starts in
 * between is never removed under its program.
 */
export async function removeJob(host: string | InlineHost, jobId: string, options: ResolveOptions = {}): Promise<JobStatus | undefined> {
  checkJobId(jobId);
  const session = new JobSession(await forJob(await resolveHost(host, options), jobId), options, () => undefined);
  // What the first attempt saw: a retry after a drop that came once `rm` had acted finds no job,
  // and must still say that one was removed.
  let seen: JobStatus | undefined;
  try {
    return await session.step('cleanup', async (link) => {
      const before = await link.steps.status(jobId).catch((error: unknown) => {
        if (error instanceof GatewayError && error.gatewayCode === 'E_NOJOB') return undefined;
        throw error;
      });
      seen ??= before;
      await link.steps.remove(jobId);
      return seen;
    });
  } finally {
    await session.drop();
  }
}

/**
 * `certificate: per-job`: cancel and rm act on one job, so they log in with a short certificate for
 * that job (key id `mint-ssh-exec job JOBID ...`), which a site that scopes certificates lets reach
 * that job only (the gateway's mgw_check_scope); `jobs` and probe get an unscoped one (JobSession).
 */
async function forJob(host: ResolvedHost, jobId: string): Promise<ResolvedHost> {
  if (!host.perJobCertificate) return host;
  return { ...host, jobCredential: await issueJobCredential(host, { purpose: `job ${jobId}`, lifetimeMs: SHORT_CERTIFICATE_MS }) };
}
