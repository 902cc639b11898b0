/** Shared helpers for integration tests: a real sandbox host per test file, temp dirs, hashing. */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startSandbox, type Sandbox, type SandboxOptions } from '../../src/sandbox/sandbox.js';

/** Starts one sandbox for the calling test file and stops it after. */
export function useSandbox(options: SandboxOptions = {}): () => Sandbox {
  let sandbox: Sandbox | undefined;
  beforeAll(async () => {
    sandbox = await startSandbox(options);
  });
  afterAll(async () => {
    await sandbox?.stop();
  });
  return () => {
    if (!sandbox) throw new Error('sandbox not started');
    return sandbox;
  };
}

export function useTempDir(): () => string {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  let current = '';
  beforeAll(async () => {
    current = await mkdtemp(join(tmpdir(), 'mint-test-'));
    dirs.push(current);
  });
  return () => current;
}

export async function freshDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'mint-test-'));
}

export async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}
