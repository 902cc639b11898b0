/**
 * Exit codes of the CLIs. `run` and `attach` exit with the remote program's own status when it ran;
 * our own failures use 200+ so they cannot be mistaken for a program's status (like ssh's 255).
 */
import { MintSshError, type ErrorCode } from '../errors.js';

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
  REMOTE_FAILED: ExitCode.FAILED,
  CANCELLED: ExitCode.CANCELLED,
  SANDBOX_FAILED: ExitCode.SANDBOX,
};

export function exitCodeFor(error: unknown): number {
  return error instanceof MintSshError ? BY_CODE[error.code] : ExitCode.INTERNAL;
}

export class UsageError extends Error {}
