/**
 * Issue 17, parts 1 and 2: OpenSSH user certificates against a real sshd that trusts a CA through
 * a `cert-authority` line (what `mint-gateway install --cert-authority` writes), the real gateway
 * behind it. Part 1 signs certificates with ssh-keygen (the sandbox's client key acts as the CA);
 * part 2 has `mint-ssh-exec ca init` make the CA and runRemote sign one certificate per job.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { chmod, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { probeHost, runRemote } from '../../src/index.js';
import { AuthError } from '../../src/errors.js';
import { authorizedKeysLine, parsePublicKey } from '../../src/site/index.js';
import { main } from '../../src/cli/mint-ssh-exec.js';
import { freshDir, useSandbox } from '../support/fixture.js';
import { runMain } from '../support/cli-io.js';

/** A user key signed by the sandbox's client key (the CA here): `-V` and `-n` as given. */
async function userCertificate(caKey: string, options: { principals: string; validity?: string; type?: string }): Promise<{ key: string; cert: string }> {
  const dir = await freshDir();
  const key = join(dir, 'user');
  execFileSync('ssh-keygen', ['-q', '-t', options.type ?? 'ed25519', '-N', '', '-C', 'user', '-f', key]);
  execFileSync('ssh-keygen', ['-q', '-s', caKey, '-I', 'issue17-test', '-z', '17', '-n', options.principals, '-V', options.validity ?? '-1m:+1h', `${key}.pub`]);
  return { key, cert: `${key}-cert.pub` };
}

describe('certificates from the client (issue 17, part 1)', () => {
  const sandbox = useSandbox({ restrictions: { certAuthority: true } });

  it.each(['ed25519', 'ecdsa', 'rsa'])('a %s certificate beside its key (KEY-cert.pub) runs a job; sshd logs the certificate it accepted', async (type) => {
    const { key } = await userCertificate(sandbox().clientKey, { principals: sandbox().user, type });
    const out = await freshDir();
    const result = await runRemote({ host: { ...sandbox().host, identityFile: key }, outputDir: out, args: ['hello'] });
    expect(result.exitCode).toBe(0);
    expect(await sandbox().sshdLog()).toMatch(/Accepted publickey for \S+ .*-CERT SHA256:\S+ ID issue17-test \(serial 17\)/);
  });

  it('certificateFile in the profile names the certificate (elsewhere than beside the key)', async () => {
    const { key, cert } = await userCertificate(sandbox().clientKey, { principals: sandbox().user });
    const elsewhere = join(await freshDir(), 'the-cert.pub');
    await writeFile(elsewhere, await readFile(cert));
    await writeFile(cert, ''); // the one beside the key is unusable: only certificateFile can work
    const result = await probeHost({ ...sandbox().host, identityFile: key, certificateFile: elsewhere });
    expect(result.ok).toBe(true);
    expect(result.steps.find((s) => s.step === 'auth')?.detail).toMatch(/^authenticated/);
  });

  it('CertificateFile from ssh_config is offered (probe used to warn it could not be)', async () => {
    const { key, cert } = await userCertificate(sandbox().clientKey, { principals: sandbox().user });
    const moved = join(await freshDir(), 'from-ssh-config-cert.pub');
    await writeFile(moved, await readFile(cert));
    await writeFile(cert, '');
    const sshConfig = join(await freshDir(), 'ssh_config');
    await writeFile(sshConfig, `Host sandbox\n  CertificateFile ${moved}\n  IdentityFile ${key}\n`);
    const { identityFile: _drop, ...host } = sandbox().host;
    const result = await probeHost({ ...host, sshConfig });
    expect(result.steps.find((s) => s.step === 'auth')).toMatchObject({ ok: true });
    expect(JSON.stringify(result.steps)).not.toContain('cannot use certificates');
  });

  it('a certificate held by ssh-agent is offered (ssh2 alone drops agent certificates)', async () => {
    const { key } = await userCertificate(sandbox().clientKey, { principals: sandbox().user });
    const dir = await freshDir();
    const socket = join(dir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && !(await readdir(dir)).includes('agent.sock'); i++) await new Promise((r) => setTimeout(r, 20));
      execFileSync('ssh-add', [key], { env: { ...process.env, SSH_AUTH_SOCK: socket }, stdio: 'pipe' });
      expect(execFileSync('ssh-add', ['-l'], { env: { ...process.env, SSH_AUTH_SOCK: socket }, encoding: 'utf8' })).toContain('CERT');
      // No identity file at all: only the agent can sign.
      const result = await probeHost({ ...sandbox().host, identityFile: join(dir, 'none'), agent: socket });
      expect(result.steps.find((s) => s.step === 'auth')).toMatchObject({ ok: true });
    } finally {
      agent.kill();
    }
  });

  it.each([
    ['expired', { validity: '20200101:20200102' }, /expired at 2020-01-02T00:00:00Z/],
    ['wrong-principal', { principals: 'somebody-else' }, /does not name the login user \S+ among its principals/],
    ['not-yet-valid', { validity: '+1d:+2d' }, /is not valid before/],
  ] as const)('a %s certificate is a typed AuthError saying which, not offered to sshd', async (kind, given, message) => {
    const { key } = await userCertificate(sandbox().clientKey, { principals: sandbox().user, ...given });
    const error = await runRemote({ host: { ...sandbox().host, identityFile: key }, outputDir: await freshDir() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect(error).toMatchObject({ code: 'AUTH_FAILED', step: 'connect' });
    expect((error as AuthError).certificateProblems).toEqual([expect.objectContaining({ kind })]);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).toContain('id "issue17-test" serial 17');
  });

  it('a certificate the server refuses (a CA it does not trust) is named, and the error says sshd does not say why', async () => {
    const otherCa = join(await freshDir(), 'other-ca');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherCa]);
    const { key } = await userCertificate(otherCa, { principals: sandbox().user });
    const error = await probeHost({ ...sandbox().host, identityFile: key });
    const auth = error.steps.find((s) => s.step === 'auth');
    expect(auth?.ok).toBe(false);
    expect(auth?.detail).toMatch(/certificate id "issue17-test" serial 17 .* was refused by the server, which does not say why/);
  });

  it('CLI: probe through a profile with certificateFile exits 0; with an expired one exits 204 saying expired', async () => {
    const good = await userCertificate(sandbox().clientKey, { principals: sandbox().user });
    const expired = await userCertificate(sandbox().clientKey, { principals: sandbox().user, validity: '20200101:20200102' });
    const dir = await freshDir();
    const profile = (key: string, cert: string): string =>
      sandbox().profileYaml().replace(`identityFile: ${sandbox().clientKey}`, `identityFile: ${key}\n    certificateFile: ${cert}`);
    await writeFile(join(dir, 'good.yaml'), profile(good.key, good.cert));
    await writeFile(join(dir, 'expired.yaml'), profile(expired.key, expired.cert));
    const ok = await runMain(main, ['probe', 'sandbox', '--config', join(dir, 'good.yaml')]);
    expect(ok.code).toBe(0);
    const bad = await runMain(main, ['run', 'sandbox', '-o', join(dir, 'out'), '--config', join(dir, 'expired.yaml')]);
    expect(bad.code).toBe(204);
    expect(bad.stderr).toMatch(/expired at 2020-01-02T00:00:00Z/);
    expect(bad.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

describe('a certificate per job (issue 17, part 2)', () => {
  const sandbox = useSandbox();

  /**
   * The site trusts MInt's CA the way `ca show` says, through a wrapper gateway that keeps what sshd
   * exposes (ExposeAuthInfo: the accepted certificate in $SSH_USER_AUTH) before running the gateway.
   */
  async function trustCa(caPub: string, seen: string): Promise<void> {
    const wrapper = join(sandbox().dir, 'gateway', 'keep-auth.sh');
    await writeFile(wrapper, `#!/bin/sh\ncat "$SSH_USER_AUTH" >> ${seen}\nexec ${sandbox().gatewayPath} "$@"\n`);
    await chmod(wrapper, 0o755);
    const line = authorizedKeysLine(parsePublicKey(caPub), wrapper, { root: sandbox().root, program: sandbox().program }, { certAuthority: true });
    await writeFile(sandbox().authorizedKeys, `${line}\n`);
  }

  it('ca init + ca show, then runRemote logs in with a fresh certificate: job key id, 1 principal, valid -1 min to timeout + margin, no extensions', async () => {
    const caDir = join(await freshDir(), 'ca');
    const init = await runMain(main, ['ca', 'init', '--dir', caDir, '--no-passphrase']);
    expect(init.code).toBe(0);
    expect(init.stdout).toContain('UNPROTECTED');
    const show = await runMain(main, ['ca', 'show', '--dir', caDir]);
    expect(show.stdout).toMatch(/mint-gateway install --key - --cert-authority/);
    const caPub = await readFile(join(caDir, 'ca.pub'), 'utf8');
    expect(show.stdout).toContain(caPub.trim());

    const sshdConfig = join(sandbox().dir, 'sshd_config');
    if (!(await readFile(sshdConfig, 'utf8')).includes('ExposeAuthInfo')) {
      await writeFile(sshdConfig, `${await readFile(sshdConfig, 'utf8')}ExposeAuthInfo yes\n`);
      await sandbox().restartSshd();
    }
    const seen = join(await freshDir(), 'seen');
    await trustCa(caPub, seen);

    const host = { ...sandbox().host, certificate: 'per-job' as const, certificateAuthority: caDir, identityFile: join(caDir, 'no-static-key') };
    const before = Math.floor(Date.now() / 1000);
    const result = await runRemote({ host, outputDir: await freshDir(), args: ['x'], timeoutMs: 120_000 });
    expect(result.exitCode).toBe(0);

    // Every connection of the job (upload, start, log, download, cleanup) used the same certificate.
    const lines = [...new Set((await readFile(seen, 'utf8')).trim().split('\n'))];
    expect(lines).toHaveLength(1);
    const [, type, base64] = lines[0]!.split(' ');
    expect(type).toBe('ssh-ed25519-cert-v01@openssh.com');
    const certFile = join(await freshDir(), 'job-cert.pub');
    await writeFile(certFile, `${type} ${base64}\n`);
    const listing = execFileSync('ssh-keygen', ['-L', '-f', certFile], { encoding: 'utf8' });
    expect(listing).toContain(`Key ID: "mint-ssh-exec job ${result.jobId} ${sandbox().user}@sandbox"`);
    // The job record names the certificate the job used (issue 17, part 4): its key id and serial.
    const record = JSON.parse(await readFile(result.recordFile!, 'utf8')) as { certificate: { keyId: string; serial: string } };
    expect(record.certificate.keyId).toBe(`mint-ssh-exec job ${result.jobId} ${sandbox().user}@sandbox`);
    expect(listing).toContain(`Serial: ${record.certificate.serial}`);
    expect(listing).toMatch(new RegExp(`Principals: \\n\\s+${sandbox().user}\\n`));
    expect(listing).toMatch(/Critical Options: \(none\)/);
    expect(listing).toMatch(/Extensions: \(none\)/);
    const validity = /Valid: from (\S+) to (\S+)/.exec(listing)!;
    const from = Date.parse(`${validity[1]}Z`) / 1000;
    const to = Date.parse(`${validity[2]}Z`) / 1000;
    expect(from).toBeGreaterThanOrEqual(before - 62);
    expect(from).toBeLessThanOrEqual(before - 58 + 5);
    expect(to - from).toBeGreaterThanOrEqual(60 + 120 + 300 - 5);
    expect(to - from).toBeLessThanOrEqual(60 + 120 + 300 + 5);

    // A second job gets another certificate (another serial).
    await runRemote({ host, outputDir: await freshDir(), args: ['y'] });
    const all = [...new Set((await readFile(seen, 'utf8')).trim().split('\n'))];
    expect(all).toHaveLength(2);
  });

  it('a passphrase-protected CA signs with $MINT_SSH_EXEC_CA_PASSPHRASE; without it the job fails typed before connecting', async () => {
    const caDir = join(await freshDir(), 'ca');
    const env = { ...process.env, MINT_SSH_EXEC_CA_PASSPHRASE: 'correct horse battery' };
    expect((await runMain(main, ['ca', 'init', '--dir', caDir], env)).code).toBe(0);
    expect(await readFile(join(caDir, 'ca'), 'utf8')).toContain('ENCRYPTED PRIVATE KEY');
    const without = { ...process.env };
    delete without.MINT_SSH_EXEC_CA_PASSPHRASE;
    expect((await runMain(main, ['ca', 'init', '--dir', join(caDir, 'x')], without)).code).toBe(200);

    await trustCa(await readFile(join(caDir, 'ca.pub'), 'utf8'), join(await freshDir(), 'seen'));
    const host = { ...sandbox().host, certificate: 'per-job' as const, certificateAuthority: caDir };
    const saved = process.env.MINT_SSH_EXEC_CA_PASSPHRASE;
    try {
      delete process.env.MINT_SSH_EXEC_CA_PASSPHRASE;
      const error = await runRemote({ host, outputDir: await freshDir() }).catch((e: unknown) => e);
      expect(error).toMatchObject({ name: 'ConfigError', code: 'CONFIG_INVALID' });
      expect((error as Error).message).toMatch(/passphrase-protected/);
      process.env.MINT_SSH_EXEC_CA_PASSPHRASE = 'correct horse battery';
      expect((await runRemote({ host, outputDir: await freshDir() })).exitCode).toBe(0);
    } finally {
      if (saved === undefined) delete process.env.MINT_SSH_EXEC_CA_PASSPHRASE;
      else process.env.MINT_SSH_EXEC_CA_PASSPHRASE = saved;
    }
  });
});
