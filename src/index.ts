export { runRemote, attach, type RunRemoteOptions, type AttachOptions } from './job/run-remote.js';
export type { RemoteResult, JobTimings } from './job/result.js';
export type { JobEvent, EventListener } from './job/events.js';
export { RemoteJobError } from './job/remote-job-error.js';
export {
  MintSshError,
  ConfigError,
  InputError,
  ConnectError,
  HostKeyError,
  AuthError,
  GatewayError,
  TransferError,
  CancelledError,
  SandboxError,
  isMintSshError,
  type ErrorCode,
  type Step,
} from './errors.js';
export { resolveHost, type InlineHost, type ResolveOptions } from './config/resolve-host.js';
export type { ResolvedHost, CleanupPolicy, RetryPolicy } from './config/resolved-host.js';
export type { HostProfile } from './config/profile-schema.js';
export { startSandbox, type Sandbox, type SandboxOptions } from './sandbox/sandbox.js';
export { PROTOCOL_VERSION, type JobState, type JobStatus } from './gateway/protocol.js';
export { listJobs, cancelJob } from './job/manage.js';
export { probeHost, PROBE_EXIT, type ProbeResult, type ProbeStep } from './probe/probe.js';
export { progressReporter } from './cli/progress.js';
export { install as installGateway, uninstall as uninstallGateway, parsePublicKey, authorizedKeysLine, type GatewayOptions, type KeyRestrictions } from './site/install.js';
export { doctor, type DoctorCheck, type DoctorOptions, type DoctorStatus } from './site/doctor.js';
export { ConnectionPool, defaultPool, type PoolOptions } from './transfer/pool.js';
