/**
 * Issue 14.4: an unreadable input failed as TRANSFER_FAILED (rsync code 23) after the upload had
 * started, and left an orphan job on the site. Inputs are now read-checked before anything is sent.
 * As root every file is readable, so the user's action runs as another account (nobody), through
 * the CLI, against the real sshd and gateway.
 */
import { spawn } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listJobs, runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';

const NOBODY = 65534;

async function runAs(uid: number, argv: string[], home: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [resolve('bin/mint-ssh-exec.mjs'), ...argv], {
    uid,
    gid: uid,
    cwd: home,
    env: { PATH: process.env.PATH, HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.on('close', r));
  return { code, stdout, stderr };
}

describe('unreadable inputs are found before anything is sent', () => {
  const sandbox = useSandbox();
  const jobsOnSite = async (): Promise<string[]> => (await listJobs(sandbox().host)).map((j) => j.jobId);

  it('as an ordinary account: a file and a directory it cannot read fail as an input error (201), and no job is left', async () => {
    const home = await freshDir();
    await chmod(home, 0o755);
    // The account's own copies of the key and known_hosts, as a real user would have them.
    const key = join(home, 'id');
    await copyFile(sandbox().clientKey, key);
    await copyFile(sandbox().knownHosts, join(home, 'known_hosts'));
    const config = join(home, 'hosts.yaml');
    await writeFile(
      config,
      sandbox()
        .profileYaml()
        .replace(/identityFile: .*/, `identityFile: ${key}`)
        .replace(/knownHostsFile: .*/, `knownHostsFile: ${join(home, 'known_hosts')}`),
    );
    const inputs = join(home, 'in');
    await mkdir(join(inputs, 'closed'), { recursive: true });
    await writeFile(join(inputs, 'ok.dat'), 'fine\n');
    await writeFile(join(inputs, 'closed', 'inside.dat'), 'x\n');
    for (const path of [home, key, join(home, 'known_hosts'), config, inputs, join(inputs, 'ok.dat')]) await chown(path, NOBODY, NOBODY);
    await chmod(key, 0o600);
    // Root's: unreadable to nobody.
    await writeFile(join(inputs, 'secret.dat'), 'root only\n', { mode: 0o600 });
    await chmod(join(inputs, 'closed'), 0o700);

    const before = await jobsOnSite();
    const jobId = '3f9d2b1e-0c4a-4e5f-9a8b-7c6d5e4f3a2b';
    const r = await runAs(NOBODY, ['run', 'sandbox', inputs, '-o', join(home, 'out'), '--job-id', jobId, '--config', config], home);
    expect(r.code, r.stderr).toBe(201);
    expect(r.stderr).toMatch(/cannot be sent whole: .*secret\.dat \(EACCES\)/);
    expect(r.stderr).toMatch(/closed\/ \(EACCES\)/);
    expect(r.stderr).toMatch(/nothing was sent/);
    expect(await jobsOnSite()).toEqual(before);
    expect(await jobsOnSite()).not.toContain(jobId);

    // The control: the same account with only readable inputs runs the job.
    const ok = await runAs(NOBODY, ['run', 'sandbox', join(inputs, 'ok.dat'), '-o', join(home, 'out'), '--config', config], home);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('a symlink without a referent inside an input directory (rsync -L cannot send it) is named up front', async () => {
    const work = await freshDir();
    await mkdir(join(work, 'in'));
    await writeFile(join(work, 'in', 'a.dat'), 'a\n');
    await symlink(join(work, 'gone'), join(work, 'in', 'dangling'));
    await expect(runRemote({ host: sandbox().host, inputs: [join(work, 'in')], outputDir: join(work, 'out') })).rejects.toMatchObject({
      code: 'INPUT_INVALID',
      message: expect.stringMatching(/dangling \(a symlink without a referent\)/),
    });
  });

  it('a symlink back up the tree inside an input directory is named up front, not copied 40 levels deep', async () => {
    const work = await freshDir();
    await mkdir(join(work, 'in', 'sub'), { recursive: true });
    await writeFile(join(work, 'in', 'sub', 'a.dat'), 'a\n');
    await symlink('..', join(work, 'in', 'sub', 'up'));
    // rsync -L would copy it 40 levels deep, then fail with code 23 after the upload began.
    await expect(runRemote({ host: sandbox().host, inputs: [join(work, 'in')], outputDir: join(work, 'out') })).rejects.toMatchObject({
      code: 'INPUT_INVALID',
      message: expect.stringMatching(/sub\/up \(a symlink back up to .*\/in: rsync -L would copy it over and over\)/),
    });
  });
});
