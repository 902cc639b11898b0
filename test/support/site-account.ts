/**
 * The tests' site account: an ordinary local account (not root, which runs the tests here) that MInt's
 * key logs into, as on a real site, so that jobs run with its uid. Shared by the sandbox's own test
 * and the cluster tests, whose slurmd and sge_execd must setuid to it (a job of root's proved nothing
 * about the job root's permissions, the munge socket or the spool dirs).
 */
import { execFileSync } from 'node:child_process';
import { beforeAll } from 'vitest';
import type { Sandbox, SandboxOptions } from '../../src/sandbox/sandbox.js';
import { useSandbox } from './fixture.js';

export const SITE_ACCOUNT = 'mintsite';

/** Creates the account once per machine (a login shell of /bin/sh, no password); needs root. */
export function ensureSiteAccount(): void {
  try {
    execFileSync('getent', ['passwd', SITE_ACCOUNT], { stdio: 'pipe' });
  } catch {
    execFileSync('useradd', ['-m', '-s', '/bin/sh', '-p', '*', '-c', 'mint-ssh-exec tests, a site account', SITE_ACCOUNT], { stdio: 'pipe' });
  }
}

/** Its uid, gid and home, as NSS says (call ensureSiteAccount first). */
export function siteAccount(): { name: string; uid: number; gid: number; home: string } {
  const [, , uid, gid, , home] = execFileSync('getent', ['passwd', SITE_ACCOUNT], { encoding: 'utf8' }).trim().split(':');
  return { name: SITE_ACCOUNT, uid: Number(uid), gid: Number(gid), home: home ?? '' };
}

/**
 * A sandbox whose key logs into the site account (its job root handed over to it), for the calling
 * test file; the account is made first if missing. Needs root, like the schedulers that use it.
 */
export function useSiteSandbox(options: Omit<SandboxOptions, 'account'> = {}): () => Sandbox {
  beforeAll(() => ensureSiteAccount());
  return useSandbox({ ...options, account: SITE_ACCOUNT });
}
