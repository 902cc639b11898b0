export { runRemote, attach, type RunRemoteOptions, type AttachOptions } from './job/run-remote.js';
export type { RemoteResult, JobTimings } from './result/result.js';
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
