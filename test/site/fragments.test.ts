/**
 * sshd itself accepts the lines the installer writes: each fragment in authorized_keys.d/, with the
 * sandbox's key and paths put in, is installed into a real sshd and a real login goes through it.
 * Also: from= and expiry-time= really restrict (a login from elsewhere, or after expiry, fails).
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';

const FRAGMENTS = join(import.meta.dirname, '..', '..', 'authorized_keys.d');

describe('authorized_keys fragments in a real sshd', () => {
  const sandbox = useSandbox();

  async function useFragment(name: string, key: string): Promise<void> {
    const s = sandbox();
    const line = (await readFile(join(FRAGMENTS, name), 'utf8'))
      .trim()
      .replaceAll('/home/mint/.mint/mint-gateway.sh', s.gatewayPath)
      .replaceAll('/home/mint/mint-jobs', s.root)
      .replaceAll('/home/mint/misrc_remote_workflow/scripts/execute_remote-side_program_ssh.sh', s.program)
      .replace(/ssh-ed25519 \S+/, key);
    await writeFile(s.authorizedKeys, `${line}\n`);
  }

  const clientKey = (): string => sandbox().clientPublicKey.split(' ').slice(0, 2).join(' ');

  it('mint-basic lets a job run', async () => {
    await useFragment('mint-basic', clientKey());
    const r = await runRemote({ host: sandbox().host, outputDir: await freshDir() });
    expect(r.exitCode).toBe(0);
  });

  it('mint-restricted lets a job run from 127.0.0.1 and applies its export list', async () => {
    await useFragment('mint-restricted', clientKey());
    const r = await runRemote({ host: sandbox().host, outputDir: await freshDir() });
    expect(r.exitCode).toBe(0);
    // The sample program writes results/line_counts.txt: allowed by results/**; nothing else is.
    expect(r.files).toEqual(['results/line_counts.txt']);
  });

  it('from= refuses a login from another address', async () => {
    const s = sandbox();
    await s.reinstall({}, { from: '192.0.2.1' });
    await expect(runRemote({ host: { ...s.host, retry: { retries: 0 } }, outputDir: await freshDir() })).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    await s.reinstall({}, { from: '127.0.0.1' });
    expect((await runRemote({ host: s.host, outputDir: await freshDir() })).exitCode).toBe(0);
  });

  it('expiry-time= refuses the key once expired', async () => {
    const s = sandbox();
    await s.reinstall({}, { expiryTime: '20200101' });
    await expect(runRemote({ host: s.host, outputDir: await freshDir() })).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    await s.reinstall({}, { expiryTime: '20991231' });
    expect((await runRemote({ host: s.host, outputDir: await freshDir() })).exitCode).toBe(0);
  });

  it('mint-cert-authority accepts a short-lived user certificate for the principal, and only that', async () => {
    const s = sandbox();
    const dir = await freshDir();
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'ca')]);
    const ca = (await readFile(join(dir, 'ca.pub'), 'utf8')).split(' ').slice(0, 2).join(' ');
    await useFragment('mint-cert-authority', ca);
    const sign = (principal: string, validity: string): string => {
      execFileSync('cp', [s.clientKey, join(dir, `user-${principal}`)]);
      execFileSync('cp', [`${s.clientKey}.pub`, join(dir, `user-${principal}.pub`)]);
      execFileSync('ssh-keygen', ['-q', '-s', join(dir, 'ca'), '-I', 'mint-test', '-n', principal, '-V', validity, join(dir, `user-${principal}.pub`)]);
      return join(dir, `user-${principal}`);
    };
    const ssh = (key: string): { status: number | null; out: string } => {
      try {
        const out = execFileSync(
          'ssh',
          ['-F', '/dev/null', '-i', key, '-o', `CertificateFile=${key}-cert.pub`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${s.knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-p', String(s.port), `${s.user}@127.0.0.1`, 'mint-gw probe'],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
        );
        return { status: 0, out };
      } catch (error) {
        return { status: (error as { status: number }).status, out: String((error as { stderr: string }).stderr) };
      }
    };
    const good = ssh(sign('mint-operator', '-5m:+1h'));
    expect(good.status).toBe(0);
    expect(good.out).toContain('mint-gw=2');
    expect(ssh(sign('someone-else', '-5m:+1h')).status).toBe(255);
    expect(ssh(sign('mint-operator', '-2h:-1h')).status).toBe(255);
  });
});
