/**
 * doctor reports what it could not check as 'skipped', with why and how to check it, never as a
 * pass. Everything runs for real: a real installed home, real files and modes, the real sshd where
 * the machine has one; only the sshd binary is swapped where a test needs `sshd -T` to fail.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { doctor, type DoctorCheck, type DoctorOptions } from '../../src/site/doctor.js';
import { main } from '../../src/cli/mint-gateway.js';
import { captureIo } from '../support/cli-io.js';
import { freshDir } from '../support/fixture.js';
import { siteHome } from '../support/site-home.js';

const ROOT = join(import.meta.dirname, '..', '..');
const SSHD = ['/usr/sbin/sshd', '/usr/bin/sshd', '/sbin/sshd', '/bin/sshd'].find((p) => existsSync(p));
const isRoot = process.getuid?.() === 0;
const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0;

/** A home with the gateway installed by `mint-gateway install` with its defaults. */
async function installedHome(): Promise<{ home: string; options: DoctorOptions }> {
  const { home } = await siteHome();
  const { io } = captureIo({ ...process.env, HOME: home });
  expect(await main(['install', '--key', join(home, 'mint.pub')], io, Readable.from([]))).toBe(0);
  return {
    home,
    options: {
      root: join(home, 'mint-jobs'),
      program: join(home, 'misrc_remote_workflow', 'scripts', 'execute_remote-side_program_ssh.sh'),
      gatewayPath: join(home, '.mint', 'mint-gateway.sh'),
      authorizedKeys: join(home, '.ssh', 'authorized_keys'),
      home,
      shell: '/bin/sh',
    },
  };
}

/** An executable standing in for sshd: fails the way sshd -T does for an account that is not root. */
async function fakeSshd(body: string): Promise<string> {
  const path = join(await freshDir(), 'sshd');
  await writeFile(path, `#!/bin/sh\n${body}\n`);
  await chmod(path, 0o755);
  return path;
}
const NOT_ROOT = 'echo "sshd: no hostkeys available -- exiting." >&2; exit 1';

function find(checks: DoctorCheck[], name: string): DoctorCheck {
  const c = checks.find((x) => x.check === name);
  if (!c) throw new Error(`no ${name} check in ${JSON.stringify(checks)}`);
  return c;
}

describe('doctor: what it cannot check is skipped, never ok', () => {
  it('sshd -T failing (as for an account that is not root): sshd-config is skipped, says why and how to check it', async () => {
    const { options } = await installedHome();
    const checks = await doctor({ ...options, sshd: await fakeSshd(NOT_ROOT) });
    const sshd = find(checks, 'sshd-config');
    expect(sshd).toMatchObject({ status: 'skipped', ok: false, severity: 'warning' });
    expect(sshd.detail).toContain('exit 1: sshd: no hostkeys available -- exiting.');
    expect(sshd.fix).toMatch(/sudo sshd -T -C user=\S+,host=localhost,addr=127\.0\.0\.1/);
    expect(sshd.fix).toContain('PermitUserEnvironment is no');
    // The rest of this installed home was checked and passes.
    expect(checks.filter((c) => c.status === 'error' || c.status === 'skipped').map((c) => c.check)).toEqual(['sshd-config']);
  });

  it('no sshd at all, or one that says nothing: skipped, not ok', async () => {
    const { options } = await installedHome();
    const missing = join(await freshDir(), 'no-such-sshd');
    expect(find(await doctor({ ...options, sshd: missing }), 'sshd-config')).toMatchObject({ status: 'skipped', ok: false, detail: expect.stringContaining(`${missing} not found`) });
    const silent = find(await doctor({ ...options, sshd: await fakeSshd('exit 0') }), 'sshd-config');
    expect(silent).toMatchObject({ status: 'skipped', ok: false, detail: expect.stringContaining('printed no permituserenvironment line') });
  });

  it('an sshd that answers is really checked: its settings pass or fail on what it says', async () => {
    const { options } = await installedHome();
    const safe = await fakeSshd("printf 'permituserenvironment no\\nacceptenv LANG\\nacceptenv LC_*\\n'");
    expect(find(await doctor({ ...options, sshd: safe }), 'sshd-config')).toMatchObject({ status: 'ok', ok: true, detail: 'PermitUserEnvironment no; AcceptEnv LANG LC_*' });
    const open = await fakeSshd("printf 'permituserenvironment yes\\nacceptenv LD_*\\n'");
    const bad = find(await doctor({ ...options, sshd: open }), 'sshd-config');
    expect(bad).toMatchObject({ status: 'error', ok: false, severity: 'error' });
    expect(bad.detail).toContain('PermitUserEnvironment is on');
    expect(bad.detail).toContain('LD_PRELOAD');
  });

  it.runIf(isRoot && SSHD)('as root, the real sshd -T is read (checked, not skipped)', async () => {
    const { options } = await installedHome();
    expect(find(await doctor(options), 'sshd-config').status).toMatch(/^(ok|error)$/);
  });

  it('real failing checks still fail, next to a skipped one', async () => {
    const { home, options } = await installedHome();
    await chmod(options.authorizedKeys, 0o666);
    await chmod(options.program, 0o644);
    await writeFile(join(home, '.ssh', 'rc'), 'echo hello\n');
    const checks = await doctor({ ...options, sshd: await fakeSshd(NOT_ROOT), shell: '/bin/sh' });
    expect(find(checks, 'authorized-keys-mode')).toMatchObject({ status: 'error', ok: false, detail: `${options.authorizedKeys} is writable by group or others`, fix: `chmod 600 ${options.authorizedKeys}` });
    expect(find(checks, 'program')).toMatchObject({ status: 'error', ok: false });
    // restrict on the gateway line keeps ~/.ssh/rc from running: that one is checked and passes.
    expect(find(checks, 'ssh-rc')).toMatchObject({ status: 'ok', ok: true });
    expect(find(checks, 'sshd-config').status).toBe('skipped');
  });

  it('every finding is consistent: ok only for ok and warn', async () => {
    const { options } = await installedHome();
    for (const c of await doctor({ ...options, sshd: await fakeSshd(NOT_ROOT) })) {
      expect(c.ok).toBe(c.status === 'ok' || c.status === 'warn');
      expect(c.severity).toBe(c.status === 'error' ? 'error' : c.status === 'ok' ? 'info' : 'warning');
      if (c.status !== 'ok') expect(c.fix, c.check).toBeTruthy();
    }
  });

  // Needs root to hand the home to another account and lock files away from it.
  it.runIf(isRoot && hasSetpriv && SSHD)('as an account that is not root, the real CLI skips what it cannot reach and the sshd -T it may not run', async () => {
    const { home, options } = await installedHome();
    const base = await mkdtemp(join(tmpdir(), 'mint-doctor-'));
    try {
      await chmod(base, 0o711);
      const userHome = join(base, 'home');
      // The home as that account's own: the same installed files, owned by uid 65534.
      spawnSync('cp', ['-a', home, userHome], { stdio: 'inherit' });
      spawnSync('chown', ['-R', '65534:65534', userHome], { stdio: 'inherit' });
      await writeFile(join(userHome, '.ssh', 'rc'), 'echo hello\n');
      spawnSync('chown', ['65534:65534', join(userHome, '.ssh', 'rc')]);
      // authorized_keys and the job root where that account cannot reach them (root's 0700 directory).
      const locked = join(base, 'locked');
      await mkdir(join(locked, 'mint-jobs'), { recursive: true, mode: 0o700 });
      await chmod(locked, 0o700);
      await copyFile(options.authorizedKeys, join(locked, 'authorized_keys'));
      // The built CLI, as installed (`npm test` builds first).
      const cli = join(ROOT, 'bin', 'mint-gateway.mjs');
      const r = spawnSync(
        'setpriv',
        ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, cli, 'doctor', '--json',
          '--dest', join(locked, 'authorized_keys'), '--root', join(locked, 'mint-jobs'),
          '--gateway-path', join(userHome, '.mint', 'mint-gateway.sh'),
          '--program', join(userHome, 'misrc_remote_workflow', 'scripts', 'execute_remote-side_program_ssh.sh')],
        { cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: userHome }, encoding: 'utf8' },
      );
      expect(r.stderr).toBe('');
      const report = JSON.parse(r.stdout) as { ok: boolean; counts: Record<string, number>; checks: DoctorCheck[] };
      const status = Object.fromEntries(report.checks.map((c) => [c.check, c.status]));
      expect(status).toMatchObject({
        'sshd-config': 'skipped',
        'ssh-rc': 'skipped',
        'authorized-key': 'skipped',
        'authorized-keys-mode': 'skipped',
        'job-root': 'skipped',
        'ssh-dir-mode': 'ok',
        'gateway-mode': 'ok',
        program: 'ok',
      });
      expect(find(report.checks, 'sshd-config').detail).toMatch(/`sshd -T` failed \(exit \d+: .+\); it usually needs root/);
      expect(find(report.checks, 'authorized-key').detail).toContain('EACCES: permission denied');
      expect(find(report.checks, 'authorized-keys-mode').detail).toContain('EACCES: permission denied');
      expect(find(report.checks, 'job-root').detail).toContain('EACCES: permission denied');
      for (const c of report.checks.filter((x) => x.status === 'skipped')) expect(c).toMatchObject({ ok: false, fix: expect.any(String) });
      expect(report.counts.skipped).toBe(5);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});
