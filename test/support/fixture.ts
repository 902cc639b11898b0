/** Shared helpers for integration tests: a real sandbox host per test file, temp dirs, hashing. */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, inject } from 'vitest';
import { startSandbox, type Sandbox, type SandboxOptions } from '../../src/sandbox/sandbox.js';
import { startDockerSandbox } from '../../src/sandbox/docker.js';

export type SandboxKind = 'local sshd' | 'testcontainers';

/** The sandbox paths this machine can run: always a local sshd; a container where Docker answers. */
export function sandboxKinds(): SandboxKind[] {
  return inject('dockerAvailable') ? ['local sshd', 'testcontainers'] : ['local sshd'];
}

/** Starts one sandbox for the calling test file (or describe block) and stops it after. */
export function useSandbox(options: SandboxOptions = {}, kind: SandboxKind = 'local sshd'): () => Sandbox {
  let sandbox: Sandbox | undefined;
  beforeAll(async () => {
    sandbox = kind === 'testcontainers' ? await startDockerSandbox(options) : await startSandbox(options);
  }, 300_000);
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

/** Fresh dirs, each removed after the test that made it (big outputs do not pile up in /tmp). */
export function useScratchDirs(): () => Promise<string> {
  const made: string[] = [];
  afterEach(async () => {
    for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true });
  });
  return async () => {
    const dir = await freshDir();
    made.push(dir);
    return dir;
  };
}

export async function freshDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'mint-test-'));
}

export async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}
