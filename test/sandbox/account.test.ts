/**
 * The sandbox as a site: MInt's key logs into an ordinary account (not the account running the
 * tests, which is root here), so jobs run with that account's uid, login shell, PATH and umask, and
 * its job root is its own. Needs root (useradd, chown); skipped otherwise, with the reason.
 */
import { execFileSync } from 'node:child_process';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRemote } from '../../src/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/sandbox.js';
import { freshDir } from '../support/fixture.js';
import { ensureSiteAccount, SITE_ACCOUNT } from '../support/site-account.js';

const PROGRAM = `#!/bin/sh
id -un
umask
echo "home=$HOME"
echo result > result.txt
`;

const root = process.getuid?.() === 0;

describe.skipIf(!root)('a sandbox whose key logs into another account (skipped unless root: it needs useradd and chown)', () => {
  let sandbox: Sandbox;
  beforeAll(async () => {
    ensureSiteAccount();
    const dir = await freshDir();
    await writeFile(join(dir, 'p.sh'), PROGRAM);
    await chmod(join(dir, 'p.sh'), 0o755);
    sandbox = await startSandbox({ program: join(dir, 'p.sh'), account: SITE_ACCOUNT });
  });
  afterAll(async () => sandbox?.stop());

  it('runs the job as that account, in a job root it owns, and brings its results back', async () => {
    const home = execFileSync('getent', ['passwd', SITE_ACCOUNT], { encoding: 'utf8' }).trim().split(':')[5];
    const uid = Number(execFileSync('id', ['-u', SITE_ACCOUNT], { encoding: 'utf8' }).trim());
    expect(sandbox.host.user).toBe(SITE_ACCOUNT);
    expect((await stat(sandbox.root)).uid).toBe(uid);
    const out = await freshDir();
    const r = await runRemote({ host: sandbox.host, outputDir: out, cleanup: 'never' });
    expect(r.exitCode, r.log).toBe(0);
    expect(r.log.split('\n').slice(0, 3)).toEqual([SITE_ACCOUNT, '0022', `home=${home}`]);
    expect(await readFile(join(out, 'result.txt'), 'utf8')).toBe('result\n');
    // The program's files on the site are the account's own.
    expect((await stat(join(sandbox.root, r.jobId, r.jobId, 'result.txt'))).uid).toBe(uid);
  });

  it('a reinstall (other gateway options) keeps the job root the account\'s', async () => {
    await sandbox.reinstall({ maxJobs: 3 });
    const r = await runRemote({ host: sandbox.host, outputDir: await freshDir() });
    expect(r.exitCode, r.log).toBe(0);
  });
});

describe('a sandbox for an account that does not exist', () => {
  it('is refused before anything starts, with how to make one', async () => {
    await expect(startSandbox({ account: 'no-such-account-mint' })).rejects.toMatchObject({
      message: expect.stringMatching(root ? /no local account "no-such-account-mint"/ : /needs root/),
    });
  });
});
