/**
 * One error family for every step of a job. Like ssh2's `level`, each error says whether retrying
 * the same step can help (`retryable`), so the retry policy never has to guess from messages.
 */
import type { ManifestDifference, RemoteResult } from './types.js';

export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'INPUT_INVALID'
  | 'HOST_UNREACHABLE'
  | 'CONNECT_TIMEOUT'
  | 'PROXY_FAILED'
  | 'CONNECTION_LOST'
  | 'HOST_KEY_UNKNOWN'
  | 'HOST_KEY_MISMATCH'
  | 'AUTH_FAILED'
  | 'GATEWAY_REFUSED'
  | 'GATEWAY_INCOMPATIBLE'
  | 'GATEWAY_PROTOCOL'
  | 'TRANSFER_FAILED'
  | 'INTEGRITY_FAILED'
  | 'REMOTE_FAILED'
  | 'CANCELLED'
  | 'SANDBOX_FAILED';

/** The step of a job's life an error happened in. */
export type Step = 'config' | 'connect' | 'upload' | 'start' | 'run' | 'download' | 'cleanup' | 'probe';

export interface ErrorContext {
  host?: string;
  jobId?: string;
  step?: Step;
  hint?: string;
  cause?: unknown;
}

export class MintSshError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly host: string | undefined;
  jobId: string | undefined;
  step: Step | undefined;
  /** What the user can do about it, in one sentence. */
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, retryable = false) {
    super(context.hint ? `${message}\n  hint: ${context.hint}` : message, { cause: context.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = retryable;
    this.host = context.host;
    this.jobId = context.jobId;
    this.step = context.step;
    this.hint = context.hint;
  }
}

export class ConfigError extends MintSshError {
  constructor(message: string, context: ErrorContext = {}) {
    super('CONFIG_INVALID', message, { step: 'config', ...context });
  }
}

export class InputError extends MintSshError {
  constructor(message: string, context: ErrorContext = {}) {
    super('INPUT_INVALID', message, { step: 'upload', ...context });
  }
}

/** Network-level trouble: the only family that retrying can cure (a name that does not resolve is not). */
export class ConnectError extends MintSshError {
  constructor(
    code: 'HOST_UNREACHABLE' | 'CONNECT_TIMEOUT' | 'PROXY_FAILED' | 'CONNECTION_LOST',
    message: string,
    context: ErrorContext = {},
    retryable = true,
  ) {
    super(code, message, { step: 'connect', ...context }, retryable);
  }
}

export class HostKeyError extends MintSshError {
  constructor(code: 'HOST_KEY_UNKNOWN' | 'HOST_KEY_MISMATCH', message: string, context: ErrorContext = {}) {
    super(code, message, { step: 'connect', ...context });
  }
}

/** Why a certificate was not offered, or that the server refused one (sshd does not say why). */
export interface CertificateProblem {
  kind: 'expired' | 'not-yet-valid' | 'wrong-principal' | 'not-a-user-certificate' | 'no-private-key' | 'unreadable' | 'refused';
  /** Where the certificate came from: its file, `ssh-agent`, or `per-job`. */
  source: string;
  message: string;
}

export class AuthError extends MintSshError {
  /** One entry per certificate that was skipped before offering it or refused by the server. */
  readonly certificateProblems: CertificateProblem[];

  constructor(message: string, context: ErrorContext & { certificateProblems?: CertificateProblem[] } = {}) {
    const { certificateProblems, ...rest } = context;
    super('AUTH_FAILED', message, { step: 'connect', ...rest });
    this.certificateProblems = certificateProblems ?? [];
  }
}

/** The gateway answered, and said no (or said something we cannot read). */
export class GatewayError extends MintSshError {
  /** The gateway's own reason, e.g. `E_NOJOB`, when it gave one. */
  readonly gatewayCode: string | undefined;
  readonly exitCode: number | undefined;

  constructor(
    code: 'GATEWAY_REFUSED' | 'GATEWAY_INCOMPATIBLE' | 'GATEWAY_PROTOCOL',
    message: string,
    context: ErrorContext & { gatewayCode?: string; exitCode?: number } = {},
  ) {
    super(code, message, context);
    this.gatewayCode = context.gatewayCode;
    this.exitCode = context.exitCode;
  }
}

export class TransferError extends MintSshError {
  readonly exitCode: number | undefined;
  readonly stderr: string;

  constructor(message: string, context: ErrorContext & { exitCode?: number; stderr?: string } = {}, retryable = false) {
    super('TRANSFER_FAILED', message, context, retryable);
    this.exitCode = context.exitCode;
    this.stderr = context.stderr ?? '';
  }
}

/**
 * The bytes are not the ones sent (issue 17, part 3): the site's inputs differ from the client's
 * manifest (the gateway refused the start, E_INTEGRITY: the program did not run), or an output
 * differs from the gateway's manifest after one re-fetch. `differences` names each file.
 */
export class IntegrityError extends MintSshError {
  readonly side: 'inputs' | 'outputs';
  readonly differences: ManifestDifference[];

  constructor(side: 'inputs' | 'outputs', message: string, context: ErrorContext & { differences?: ManifestDifference[] } = {}) {
    const { differences, ...rest } = context;
    super('INTEGRITY_FAILED', message, { step: side === 'inputs' ? 'start' : 'download', ...rest });
    this.side = side;
    this.differences = differences ?? [];
  }
}

export class CancelledError extends MintSshError {
  /**
   * The job's result when it had started: state 'cancelled' and the log up to the end. Set once the
   * cancelled job has been wound down (the error is often the AbortSignal's reason, made earlier).
   */
  result: RemoteResult | undefined;

  constructor(message: string, context: ErrorContext = {}) {
    super('CANCELLED', message, context);
  }
}

/** Thrown only with throwOnFailure: the program ran and failed; the full result rides along. */
export class RemoteJobError extends MintSshError {
  readonly result: RemoteResult;

  constructor(result: RemoteResult) {
    const how = result.state === 'exited' ? `exited with code ${result.exitCode}` : `ended as ${result.state}`;
    const tail = result.log.trimEnd().split('\n').slice(-10).join('\n');
    super('REMOTE_FAILED', `remote program on ${result.host} ${how} (job ${result.jobId})\n---------- remote side log ----------------\n${tail}\n-------------------------------------------`, {
      host: result.host,
      jobId: result.jobId,
      step: 'run',
    });
    this.result = result;
  }
}

export class SandboxError extends MintSshError {
  constructor(message: string, context: ErrorContext = {}) {
    super('SANDBOX_FAILED', message, context);
  }
}

export function isMintSshError(value: unknown): value is MintSshError {
  return value instanceof MintSshError;
}
