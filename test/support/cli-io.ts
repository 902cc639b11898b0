/** Runs a CLI's main() in-process and captures what it prints. */
import { PassThrough } from 'node:stream';
import type { Io } from '../../src/cli/output.js';

export interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

export function captureIo(env: NodeJS.ProcessEnv = process.env): { io: Io; out: () => { stdout: string; stderr: string } } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  return { io: { stdout, stderr, env }, out: () => ({ stdout: out, stderr: err }) };
}

export async function runMain(
  main: (argv: string[], io: Io, signal?: AbortSignal) => Promise<number>,
  argv: string[],
  env?: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<Captured> {
  const { io, out } = captureIo(env);
  const code = await main(argv, io, signal);
  await new Promise((r) => setImmediate(r));
  return { code, ...out() };
}
