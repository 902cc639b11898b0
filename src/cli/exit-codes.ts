/**
 * Exit codes of the CLIs. `run` and `attach` exit with the remote program's own status when it ran;
 * our own failures use 200+ so they cannot be mistaken for a program's status (like ssh's 255).
 */
import { CancelledError, GatewayError, MintSshError, type ErrorCode, type Step } from '../errors.js';
import type { RemoteResult } from '../types.js';

export const ExitCode = {
  OK: 0,
  FAILED: 1,
  USAGE: 2,
  CONFIG: 200,
  INPUT: 201,
  UNREACHABLE: 202,
  HOST_KEY: 203,
  AUTH: 204,
  GATEWAY: 205,
  TRANSFER: 206,
  CANCELLED: 207,
  SANDBOX: 208,
  INTEGRITY: 209,
  INTERNAL: 220,
} as const;

const BY_CODE: Record<ErrorCode, number> = {
  CONFIG_INVALID: ExitCode.CONFIG,
  INPUT_INVALID: ExitCode.INPUT,
  HOST_UNREACHABLE: ExitCode.UNREACHABLE,
  CONNECT_TIMEOUT: ExitCode.UNREACHABLE,
  PROXY_FAILED: ExitCode.UNREACHABLE,
  CONNECTION_LOST: ExitCode.UNREACHABLE,
  HOST_KEY_UNKNOWN: ExitCode.HOST_KEY,
  HOST_KEY_MISMATCH: ExitCode.HOST_KEY,
  AUTH_FAILED: ExitCode.AUTH,
  GATEWAY_REFUSED: ExitCode.GATEWAY,
  GATEWAY_INCOMPATIBLE: ExitCode.GATEWAY,
  GATEWAY_PROTOCOL: ExitCode.GATEWAY,
  TRANSFER_FAILED: ExitCode.TRANSFER,
  INTEGRITY_FAILED: ExitCode.INTEGRITY,
  REMOTE_FAILED: ExitCode.FAILED,
  CANCELLED: ExitCode.CANCELLED,
  SANDBOX_FAILED: ExitCode.SANDBOX,
};

export function exitCodeFor(error: unknown): number {
  return error instanceof MintSshError ? BY_CODE[error.code] : ExitCode.INTERNAL;
}

export class UsageError extends Error {}

/** `--json`'s answer on failure: one object, on stdout, where a success prints the result. */
export interface ErrorReport {
  error: {
    /** An ErrorCode, or USAGE (a bad command line) or INTERNAL (a bug: please report it). */
    code: ErrorCode | 'USAGE' | 'INTERNAL';
    /** What the command exits with. */
    exitCode: number;
    message: string;
    hint?: string;
    step?: Step;
    host?: string;
    jobId?: string;
    retryable?: boolean;
    /** The gateway's own reason (E_NOJOB, E_LIMIT, ...) when it refused. */
    gatewayCode?: string;
  };
  /** A cancelled job's result (its log up to the end), when it had started. */
  result?: RemoteResult;
}

export function errorReport(error: unknown): ErrorReport {
  if (error instanceof MintSshError) {
    // MintSshError's message ends with its hint for people reading a terminal; here it is a field.
    const suffix = error.hint === undefined ? '' : `\n  hint: ${error.hint}`;
    const message = suffix && error.message.endsWith(suffix) ? error.message.slice(0, -suffix.length) : error.message;
    const gatewayCode = error instanceof GatewayError ? error.gatewayCode : undefined;
    const result = error instanceof CancelledError ? error.result : undefined;
    return {
      error: {
        code: error.code,
        exitCode: exitCodeFor(error),
        message,
        ...(error.hint === undefined ? {} : { hint: error.hint }),
        ...(error.step === undefined ? {} : { step: error.step }),
        ...(error.host === undefined ? {} : { host: error.host }),
        ...(error.jobId === undefined ? {} : { jobId: error.jobId }),
        retryable: error.retryable,
        ...(gatewayCode === undefined ? {} : { gatewayCode }),
      },
      ...(result ? { result } : {}),
    };
  }
  if (error instanceof UsageError) return { error: { code: 'USAGE', exitCode: ExitCode.USAGE, message: error.message } };
  return { error: { code: 'INTERNAL', exitCode: ExitCode.INTERNAL, message: error instanceof Error ? error.message : String(error) } };
}
