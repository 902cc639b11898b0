/**
 * Issue 17, part 2: a per-job certificate opens its own job and no other, where the site can
 * enforce it. A real sshd trusts MInt's CA (`ca init`) through a cert-authority line, with
 * `ExposeAuthInfo yes` (the gateway reads the certificate's key id from $SSH_USER_AUTH) or without
 * it (nothing is scoped, unless the line says --enforce-job-scope: then everything is refused).
 */
import { describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runRemote, listJobs, cancelJob } from '../../src/index.js';
import { GatewayError } from '../../src/errors.js';
import { refusalError } from '../../src/gateway/protocol.js';
import { resolveHost } from '../../src/config/resolve-host.js';
import { issueJobCredential } from '../../src/connection/cert-authority.js';
import { authorizedKeysLine, parsePublicKey, doctor } from '../../src/site/index.js';
import { main } from '../../src/cli/mint-ssh-exec.js';
import { freshDir, useSandbox } from '../support/fixture.js';
import { runMain } from '../support/cli-io.js';
import { EXIT, gatewayStderr, openGateway, readAudit, refusalLine } from '../support/hostile-helpers.js';

const CAPS = '.iLsfxCIvu';

describe('a per-job certificate is scoped to its job (issue 17, part 2)', () => {
  const sandbox = useSandbox({ sshdConfig: ['ExposeAuthInfo yes', 'AcceptEnv SSH_USER_AUTH'] });
  let caDir = '';

  /** MInt's CA on a cert-authority line (scoped as the options say) and the sandbox's plain key beside it. */
  async function trust(options: { enforceJobScope?: boolean } = {}): Promise<void> {
    if (!caDir) {
      caDir = join(await freshDir(), 'ca');
      expect((await runMain(main, ['ca', 'init', '--dir', caDir, '--no-passphrase'])).code).toBe(0);
    }
    const s = sandbox();
    const gateway = { root: s.root, program: s.program, ...options };
    const ca = authorizedKeysLine(parsePublicKey(await readFile(join(caDir, 'ca.pub'), 'utf8')), s.gatewayPath, gateway, { certAuthority: true });
    const plain = authorizedKeysLine(parsePublicKey(s.clientPublicKey), s.gatewayPath, gateway);
    await writeFile(s.authorizedKeys, `${ca}\n${plain}\n`);
  }

  async function exposeAuthInfo(on: boolean): Promise<void> {
    const config = join(sandbox().dir, 'sshd_config');
    const text = (await readFile(config, 'utf8')).replace(/^ExposeAuthInfo .*\n/m, '');
    await writeFile(config, `${text}ExposeAuthInfo ${on ? 'yes' : 'no'}\n`);
    await sandbox().restartSshd();
  }

  const perJobHost = () => ({ ...sandbox().host, certificate: 'per-job' as const, certificateAuthority: caDir, identityFile: join(caDir, 'no-static-key') });

  /** A raw gateway session logged in with a certificate whose key id names `jobId`. */
  async function sessionFor(jobId: string) {
    const resolved = await resolveHost(perJobHost());
    const jobCredential = await issueJobCredential(resolved, { purpose: `job ${jobId}`, lifetimeMs: 600_000 });
    return openGateway(sandbox(), 4, { ...resolved, jobCredential });
  }

  /** Job B, made with the plain key: it must survive everything job A's certificate tries. */
  async function otherJob(): Promise<string> {
    const b = randomUUID();
    const plain = await openGateway(sandbox());
    try {
      const started = await plain.run(`mint-gw start ${b} hello`);
      expect(started.exitCode, started.stderr).toBe(0);
    } finally {
      plain.close();
    }
    return b;
  }

  it('with ExposeAuthInfo: runRemote runs its job; job A\'s certificate is refused (E_SCOPE, audited) on every verb of job B and on list', async () => {
    await trust();
    const result = await runRemote({ host: perJobHost(), outputDir: await freshDir(), args: ['scoped'] });
    expect(result.exitCode).toBe(0);

    const b = await otherJob();
    const a = randomUUID();
    const session = await sessionFor(a);
    try {
      expect((await session.run("mint-gw probe")).exitCode).toBe(0);
      // Its own job: past the scope (no such job yet).
      expect((await session.run(`mint-gw status ${a}`)).exitCode).toBe(EXIT.E_NOJOB);
      const before = (await readAudit(sandbox().root)).length;
      const attempts = [`status ${b}`, `logs ${b} 0`, `take ${b}`, `get ${b}`, `cancel ${b}`, `rm ${b}`, `put ${b} ${CAPS}`, `start ${b} x`, `run ${b} x`, `startx ${b}`, `runx ${b}`, `putx ${b}`, `takex ${b}`, `jobx ${b} 100`];
      for (const attempt of attempts) {
        const r = await session.run(`mint-gw ${attempt}`);
        expect(r.exitCode, attempt).toBe(EXIT.E_SCOPE);
        expect(gatewayStderr(r.stderr)).toBe(refusalLine('E_SCOPE', `the certificate that logged in is for job ${a} only, not job ${b}`));
      }
      const list = await session.run('mint-gw list');
      expect(list.exitCode).toBe(EXIT.E_SCOPE);
      expect(list.stdout.toString()).toBe('');
      expect(gatewayStderr(list.stderr)).toBe(refusalLine('E_SCOPE', `the certificate that logged in is for job ${a} only: it may not list jobs`));

      // A forged SSH_USER_AUTH (the client's env request, which this sshd's AcceptEnv lets through)
      // naming a file that shows a plain key: sshd sets its own after the client's, so nothing changes.
      const forged = join(sandbox().dir, 'forged-auth');
      await writeFile(forged, `publickey ${sandbox().clientPublicKey.split(' ').slice(0, 2).join(' ')}\n`);
      const spoof = await session.run(`mint-gw status ${b}`, { env: { SSH_USER_AUTH: forged } });
      expect(spoof.exitCode).toBe(EXIT.E_SCOPE);

      const refused = (await readAudit(sandbox().root)).slice(before);
      expect(refused.map((l) => l.decision)).toEqual(Array(attempts.length + 2).fill('refused:E_SCOPE'));
      expect(refused.every((l) => l.raw.includes(` job=${l.verb === 'list' ? '-' : b} `))).toBe(true);
    } finally {
      session.close();
    }
    // Job B is whole: the plain key still sees it, its log there.
    const plain = await openGateway(sandbox());
    try {
      const status = await plain.run(`mint-gw status ${b}`);
      expect(status.exitCode).toBe(0);
      expect(status.stdout.toString()).toMatch(/^state=(running|exited)$/m);
    } finally {
      plain.close();
    }
  });

  it('the client side: a refused verb is a typed GatewayError E_SCOPE; jobs (list) and cancel sign their own certificates', async () => {
    await trust();
    const b = await otherJob();
    // `cancel` signs a certificate for the job it cancels (sshd logs its key id), so it is let through.
    await expect(cancelJob(perJobHost(), b)).resolves.toMatchObject({ jobId: b });
    expect(await sandbox().sshdLog()).toMatch(new RegExp(`Accepted publickey .* ID mint-ssh-exec job ${b} `));
    // `jobs` signs an unscoped one (key id `mint-ssh-exec connection ...`): it lists.
    expect((await listJobs(perJobHost())).map((j) => j.jobId)).toContain(b);
    // attach to job B with a certificate for job A: what a stolen certificate would try.
    const a = randomUUID();
    const session = await sessionFor(a);
    try {
      const r = await session.run(`mint-gw logs ${b} 0`);
      expect(r.exitCode).toBe(EXIT.E_SCOPE);
    } finally {
      session.close();
    }
    const error = refusalError('status', 73, refusalLine('E_SCOPE', `the certificate that logged in is for job ${a} only, not job ${b}`));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ gatewayCode: 'E_SCOPE', hint: expect.stringContaining('per-job certificate') });
  });

  it('without ExposeAuthInfo: --enforce-job-scope refuses every request (E_CONFIG, audited), a forged SSH_USER_AUTH changes nothing; without the flag nothing is scoped', async () => {
    await exposeAuthInfo(false);
    try {
      await trust({ enforceJobScope: true });
      const error = await runRemote({ host: perJobHost(), outputDir: await freshDir(), args: ['x'] }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(GatewayError);
      expect(error).toMatchObject({ gatewayCode: 'E_CONFIG' });
      expect((error as Error).message).toContain('ExposeAuthInfo yes');

      const a = randomUUID();
      const session = await sessionFor(a);
      try {
        const before = (await readAudit(sandbox().root)).length;
        const probe = await session.run('mint-gw probe');
        expect(probe.exitCode).toBe(EXIT.E_CONFIG);
        // The client's own SSH_USER_AUTH (AcceptEnv lets it through here, as sshd sets none now),
        // naming a file that shows a plain key: under the job root (where an upload lands), in
        // /tmp with sshd's name but readable by others, or this account's authorized_keys (mode
        // 600, its own, but not sshd's lines): each is refused.
        const plainKey = `publickey ${sandbox().clientPublicKey.split(' ').slice(0, 2).join(' ')}\n`;
        const underRoot = join(sandbox().root, 'forged-auth');
        await writeFile(underRoot, plainKey);
        const open644 = `/tmp/sshauth.${randomUUID().replace(/-/g, '').slice(0, 15)}`;
        await writeFile(open644, plainKey, { mode: 0o644 });
        const keysLike = `/tmp/sshauth.${randomUUID().replace(/-/g, '').slice(0, 15)}`;
        await writeFile(keysLike, await readFile(sandbox().authorizedKeys), { mode: 0o600 });
        try {
          for (const [forged, message] of [
            [underRoot, 'SSH_USER_AUTH does not name a file sshd made (/tmp/sshauth.*)'],
            [open644, "SSH_USER_AUTH does not name a file sshd made (this account's, mode 600)"],
            [keysLike, "SSH_USER_AUTH holds a line that is not sshd's"],
          ] as const) {
            const spoof = await session.run(`mint-gw status ${a}`, { env: { SSH_USER_AUTH: forged } });
            expect(spoof.exitCode, forged).toBe(EXIT.E_CONFIG);
            expect(gatewayStderr(spoof.stderr)).toBe(refusalLine('E_CONFIG', message));
          }
        } finally {
          await rm(open644, { force: true });
          await rm(keysLike, { force: true });
        }
        expect((await readAudit(sandbox().root)).slice(before).map((l) => l.decision)).toEqual(Array(4).fill('refused:E_CONFIG'));
      } finally {
        session.close();
      }

      // Without the flag the site does not scope: job A's certificate reaches job B.
      await trust();
      const b = await otherJob();
      const open = await sessionFor(a);
      try {
        expect((await open.run(`mint-gw status ${b}`)).exitCode).toBe(0);
      } finally {
        open.close();
      }
    } finally {
      await exposeAuthInfo(true);
    }
  });

  it('doctor says whether the site enforces it (sshd -T exposeauthinfo, the line\'s --enforce-job-scope)', async () => {
    const s = sandbox();
    const sshdT = async (expose: string): Promise<string> => {
      const path = join(await freshDir(), 'sshd');
      await writeFile(path, `#!/bin/sh\nprintf 'permituserenvironment no\\nacceptenv LANG\\nexposeauthinfo ${expose}\\n'\n`, { mode: 0o755 });
      return path;
    };
    const scope = async (expose: string) =>
      (await doctor({ root: s.root, program: s.program, gatewayPath: s.gatewayPath, authorizedKeys: s.authorizedKeys, sshd: await sshdT(expose) })).find((c) => c.check === 'job-scope');
    await trust({ enforceJobScope: true });
    expect(await scope('yes')).toMatchObject({ status: 'ok', detail: expect.stringContaining('enforced') });
    expect(await scope('no')).toMatchObject({ status: 'error', detail: expect.stringContaining('every request is refused') });
    await trust();
    expect(await scope('yes')).toMatchObject({ status: 'warn' });
    expect(await scope('no')).toMatchObject({ status: 'warn', detail: expect.stringContaining('not enforced') });
  });
});
