/**
 * Running one gateway verb to completion on an open connection. ssh2 only emits `close` on a channel
 * whose stdout was consumed, so stdout is always read, even when the caller does not want it.
 */
import type { ClientChannel } from 'ssh2';
import { StringDecoder } from 'node:string_decoder';
import { ConnectError } from '../errors.js';
import type { Connection } from './connect.js';

export interface ExecResult {
  stdout: Buffer;
  stderr: string;
  /** undefined when the remote command ended by a signal or the channel closed without a status. */
  exitCode: number | undefined;
  signal: string | undefined;
}

export interface ExecOptions {
  /** Called for each stdout chunk instead of buffering it. */
  onStdout?: (chunk: Buffer) => void;
  /** Called for each complete stderr line as it arrives (stderr is collected all the same). */
  onStderrLine?: (line: string) => void;
  signal?: AbortSignal;
  maxBuffer?: number;
  /** Written to the command's stdin, which then ends (startx/runx read their request there). */
  stdin?: string | Buffer;
  /** Called once the server has opened the channel: the command was delivered and runs there. */
  onOpen?: () => void;
}

export async function execCollect(connection: Connection, command: string, options: ExecOptions = {}): Promise<ExecResult> {
  const channel = await connection.exec(command);
  options.onOpen?.();
  const result = collect(connection, channel, options);
  if (options.stdin !== undefined) channel.end(options.stdin);
  return result;
}

export function collect(connection: Connection, channel: ClientChannel, options: ExecOptions = {}): Promise<ExecResult> {
  const maxBuffer = options.maxBuffer ?? 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let stderr = '';
    let exitCode: number | undefined;
    let signal: string | undefined;
    let done = false;
    const finish = (error?: Error): void => {
      if (done) return;
      done = true;
      offClose();
      options.signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve({ stdout: Buffer.concat(chunks), stderr, exitCode, signal });
    };
    const onAbort = (): void => {
      channel.close();
      finish(options.signal?.reason instanceof Error ? options.signal.reason : new Error('aborted'));
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const offClose = connection.onClose((error) => {
      finish(error ?? new ConnectError('CONNECTION_LOST', `connection to ${connection.host.name} closed during a command`, { host: connection.host.name }));
    });
    channel.on('data', (chunk: Buffer) => {
      if (options.onStdout) {
        options.onStdout(chunk);
        return;
      }
      size += chunk.length;
      if (size <= maxBuffer) chunks.push(chunk);
    });
    const stderrLines = options.onStderrLine ? splitLines(options.onStderrLine) : undefined;
    channel.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 65536) stderr += chunk.toString('utf8');
      stderrLines?.(chunk);
    });
    channel.on('exit', (code: number | null, signalName?: string) => {
      exitCode = code ?? undefined;
      signal = signalName ?? undefined;
    });
    // ssh2 may emit `exit` before we listen (it parses the whole buffer once the exec is accepted);
    // `close` carries the same status, and it cannot come before the output we consume.
    channel.on('close', (code?: number | null, signalName?: string) => {
      exitCode ??= code ?? undefined;
      signal ??= signalName ?? undefined;
      finish();
    });
  });
}

/**
 * Calls `onLine` with each complete line of a byte stream, as chunks arrive. Lines are found in
 * the stream itself, not in a capped copy of it, so a line after a flood of output is still seen;
 * only the unfinished tail is held, and a tail that grows past 64 KiB is no line anyone waits for.
 */
export function splitLines(onLine: (line: string) => void): (chunk: Buffer) => void {
  const decoder = new StringDecoder('utf8');
  let tail = '';
  return (chunk) => {
    const parts = (tail + decoder.write(chunk)).split('\n');
    tail = parts.pop() ?? '';
    if (tail.length > 65536) tail = '';
    for (const line of parts) onLine(line);
  };
}
