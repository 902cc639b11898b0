/**
 * Runs once before the suite: says which sandbox path the integration tests take, and fails loudly
 * (not by skipping) when what they need is missing.
 */
import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { findSshd } from '../../src/sandbox/sandbox.js';
import { dockerAvailable } from '../../src/sandbox/docker.js';

export default async function setup(project: TestProject): Promise<void> {
  const sshd = findSshd();
  const rsync = execFileSync('rsync', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  const docker = await dockerAvailable();
  const path = docker.available ? 'testcontainers (Docker engine found) and local sshd' : `local sshd only (${docker.reason})`;
  process.stdout.write(`\n[mint-ssh-exec] integration sandbox: ${path}\n[mint-ssh-exec] sshd: ${sshd}; ${rsync}\n\n`);
  project.provide('dockerAvailable', docker.available);
}

declare module 'vitest' {
  export interface ProvidedContext {
    dockerAvailable: boolean;
  }
}
