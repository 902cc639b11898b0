import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { main } from '../../src/cli/mint-gateway.js';
import { siteHome } from '../support/site-home.js';
import { captureIo } from '../support/cli-io.js';

async function gw(argv: string[], home: string, stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  const { io, out } = captureIo({ ...process.env, HOME: home });
  const code = await main(argv, io, Readable.from([Buffer.from(stdin)]));
  return { code, ...out() };
}

describe('mint-gateway CLI', () => {
  it('install --print only prints the line', async () => {
    const { home, pub } = await siteHome();
    const r = await gw(['install', '--key', '-', '--print', '--max-jobs', '2'], home, pub);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^restrict,command="${home}/\\.mint/mint-gateway\\.sh --root ${home}/mint-jobs --program ${home}/misrc_remote_workflow/scripts/execute_remote-side_program_ssh\\.sh --max-jobs 2" ssh-ed25519 `));
    expect(() => execFileSync('test', ['-e', join(home, '.ssh', 'authorized_keys')])).toThrow();
  });

  it('install with defaults, doctor passes; reinstall is idempotent; uninstall removes the line', async () => {
    const { home, pub } = await siteHome();
    const first = await gw(['install', '--key', join(home, 'mint.pub')], home);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('added the mint-gateway line');
    expect((await gw(['install', '--key', join(home, 'mint.pub')], home)).stdout).toContain('unchanged');
    const keys = await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8');
    expect(keys.trim().split('\n')).toHaveLength(1);
    const doctor = await gw(['doctor', '--json'], home);
    const report = JSON.parse(doctor.stdout) as { ok: boolean; checks: { check: string; status: string }[] };
    // Only sshd-config may be skipped (`sshd -T` needs root); nothing fails.
    expect(report.checks.filter((c) => c.status !== 'ok' && c.status !== 'warn' && !(c.status === 'skipped' && c.check === 'sshd-config'))).toEqual([]);
    expect(report.ok).toBe(true);
    expect(doctor.code).toBe(0);
    const un = await gw(['uninstall', '--key', '-'], home, pub);
    expect(un.stdout).toContain('removed');
    expect((await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8')).trim()).toBe('');
  });

  it('install refuses a root the gateway would refuse before changing anything, and takes --grace', async () => {
    const { home } = await siteHome();
    const before = (await stat(home)).mode;
    for (const root of [home, join(home, '.ssh')]) {
      const r = await gw(['install', '--key', join(home, 'mint.pub'), '--root', root], home);
      expect(r.code).toBe(200);
      expect(r.stderr).toMatch(/home dir, holds ~\/\.ssh or is inside it/);
    }
    expect((await stat(home)).mode).toBe(before);
    expect(() => execFileSync('test', ['-e', join(home, '.ssh', 'authorized_keys')])).toThrow();
    const grace = await gw(['install', '--key', join(home, 'mint.pub'), '--grace', '5', '--print'], home);
    expect(grace.code).toBe(0);
    expect(grace.stdout).toMatch(/ --grace 5" ssh-ed25519 /);
  });

  it('re-running install to change one option says exactly what the rewritten line dropped and added', async () => {
    const { home } = await siteHome();
    expect((await gw(['install', '--key', join(home, 'mint.pub'), '--max-jobs', '2', '--export', 'results/*'], home)).code).toBe(0);
    const again = await gw(['install', '--key', join(home, 'mint.pub'), '--max-jobs', '3'], home);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^updated the mint-gateway line/);
    expect(again.stdout.split('\n').filter((l) => /^(removed|added): /.test(l))).toEqual(["removed: --export 'results/*'", 'removed: --max-jobs 2', 'added: --max-jobs 3']);
  });

  it('install refuses a private key or garbage with a clear message and exit code', async () => {
    const { home } = await siteHome();
    const r = await gw(['install', '--key', join(home, 'mint')], home);
    expect(r.code).toBe(200);
    expect(r.stderr).toMatch(/mint-gateway: error: .*(private key|key type)/);
    const missing = await gw(['install', '--key', join(home, 'nope.pub')], home);
    expect(missing.stderr).toContain('cannot read public key');
    expect((await gw(['install'], home)).code).toBe(2);
  });

  it('doctor finds what defeats or slows the gateway, each with a fix', async () => {
    const { home } = await siteHome();
    await gw(['install', '--key', join(home, 'mint.pub')], home);
    await chmod(join(home, 'mint-jobs'), 0o777);
    await chmod(join(home, '.ssh', 'authorized_keys'), 0o666);
    await writeFile(join(home, '.ssh', 'authorized_keys'), (await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8')).replace('restrict,', 'no-pty,'));
    await writeFile(join(home, '.ssh', 'rc'), 'echo hello\n');
    await chmod(join(home, 'misrc_remote_workflow', 'scripts', 'execute_remote-side_program_ssh.sh'), 0o644);
    const r = await gw(['doctor'], home);
    expect(r.code).toBe(1);
    for (const check of ['ssh-rc', 'authorized-key', 'authorized-keys-mode', 'job-root', 'program']) {
      expect(r.stdout).toMatch(new RegExp(`\\[FAIL\\] +${check}\\b`));
    }
    expect(r.stdout).toContain('fix: chmod 700');
    expect(r.stdout).toMatch(/^ {2}summary: \d+ ok, \d+ warnings?, [01] skipped, 5 errors$/m);
    expect(r.stdout).toContain('verdict: fix the FAIL lines above');
  });

  it('doctor prints what it could not check as SKIPPED, counts it, and still exits 0 when nothing fails', async () => {
    const { home } = await siteHome();
    await gw(['install', '--key', join(home, 'mint.pub')], home);
    // An sshd that fails as `sshd -T` does for an account that is not root.
    const sshd = join(home, 'sshd');
    await writeFile(sshd, '#!/bin/sh\necho "sshd: no hostkeys available -- exiting." >&2\nexit 1\n');
    await chmod(sshd, 0o755);
    const r = await gw(['doctor', '--sshd', sshd], home);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/^ {2}\[SKIPPED\] sshd-config +could not read sshd's settings: `.*sshd -T` failed \(exit 1: sshd: no hostkeys available -- exiting\.\); it usually needs root$/m);
    expect(r.stdout).toMatch(/^ +fix: run `sudo sshd -T -C user=/m);
    expect(r.stdout).not.toMatch(/\[ ok \] +sshd-config/);
    expect(r.stdout).toMatch(/^ {2}summary: \d+ ok, \d+ warnings?, 1 skipped, 0 errors$/m);
    expect(r.stdout).toContain('verdict: the gateway holds as far as checked; the SKIPPED lines were not checked');
    const json = await gw(['doctor', '--sshd', sshd, '--json'], home);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as { ok: boolean; counts: Record<string, number>; checks: { check: string; status: string; ok: boolean; fix?: string }[] };
    expect(report.ok).toBe(true);
    expect(report.counts).toMatchObject({ skipped: 1, error: 0 });
    expect(report.checks.find((c) => c.check === 'sshd-config')).toMatchObject({ status: 'skipped', ok: false, fix: expect.stringContaining('sshd -T') });
  });

  it('doctor fails on a real error even when another check is skipped', async () => {
    const { home } = await siteHome();
    await gw(['install', '--key', join(home, 'mint.pub')], home);
    await chmod(join(home, '.ssh', 'authorized_keys'), 0o666);
    const r = await gw(['doctor', '--sshd', join(home, 'no-such-sshd')], home);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/\[SKIPPED\] sshd-config +could not read sshd's settings: .*no-such-sshd not found/);
    expect(r.stdout).toMatch(/\[FAIL\] +authorized-keys-mode .* is writable by group or others/);
    expect(r.stdout).toMatch(/^ {2}summary: \d+ ok, \d+ warnings?, 1 skipped, 1 error$/m);
    expect(r.stdout).toContain('verdict: fix the FAIL lines above');
  });

  it('doctor refuses a job root that holds ~/.ssh', async () => {
    const { home } = await siteHome();
    await gw(['install', '--key', join(home, 'mint.pub')], home);
    const r = await gw(['doctor', '--root', home, '--json'], home);
    const report = JSON.parse(r.stdout) as { checks: { check: string; ok: boolean; detail: string }[] };
    expect(report.checks.find((c) => c.check === 'job-root')).toMatchObject({ ok: false, detail: expect.stringContaining('home dir') });
  });
});
