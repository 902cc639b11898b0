import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
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
    const report = JSON.parse(doctor.stdout) as { ok: boolean; checks: { check: string; ok: boolean }[] };
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(doctor.code).toBe(0);
    const un = await gw(['uninstall', '--key', '-'], home, pub);
    expect(un.stdout).toContain('removed');
    expect((await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8')).trim()).toBe('');
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
      expect(r.stdout).toMatch(new RegExp(`\\[FAIL\\] ${check}\\b`));
    }
    expect(r.stdout).toContain('fix: chmod 700');
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
