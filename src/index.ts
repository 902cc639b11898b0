/**
 * mint-ssh-exec's core entry: run a job on an external computer, attach to it, list and cancel jobs,
 * probe a host, resolve its profile; the errors and the types. The sandbox (`mint-ssh-exec/sandbox`),
 * the site's tools (`mint-ssh-exec/site`) and the CLI's pieces (`mint-ssh-exec/cli`) have entries of their own.
 */
export { runRemote, attach, CANCEL_MARGIN_MS, type RunRemoteOptions, type AttachOptions } from './job/run-remote.js';
export { LOG_TAIL_BYTES } from './job/log-file.js';
export type { RemoteResult, JobTimings, Resources, SchedulerInfo, ManifestEntry, ManifestDifference } from './types.js';
export type { JobEvent, EventListener } from './job/events.js';
export {
  MintSshError,
  RemoteJobError,
  ConfigError,
  InputError,
  ConnectError,
  HostKeyError,
  AuthError,
  GatewayError,
  TransferError,
  IntegrityError,
  CancelledError,
  SandboxError,
  isMintSshError,
  type ErrorCode,
  type Step,
} from './errors.js';
export { resolveHost, type InlineHost, type ResolveOptions } from './config/resolve-host.js';
export type { ResolvedHost, CleanupPolicy, RetryPolicy } from './config/resolved-host.js';
export type { HostProfile } from './config/profile-schema.js';
export { PROTOCOL_VERSION, type JobState, type JobStatus } from './gateway/protocol.js';
export { listJobs, cancelJob, removeJob } from './job/manage.js';
export { probeHost, type ProbeResult, type ProbeStep } from './probe/probe.js';
export { ConnectionPool, defaultPool, type PoolOptions } from './transfer/pool.js';
