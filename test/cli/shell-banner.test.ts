/**
 * A login shell that prints (issue 14, item 10): sshd runs the forced command through the account's
 * shell (`$SHELL -c`), and bash, started by sshd, reads ~/.bashrc even when not interactive, so its
 * `echo "Welcome to the cluster"` comes before every answer of the gateway. rsync then fails with
 * `protocol version mismatch -- is your shell clean?`: every job fails. probe must say so (exit 15,
 * the gateway step) with the fix, and a job must fail with a typed error naming the same fix.
 * The account here is the test's own, whose shell is bash; its home for the session is a fresh dir
 * with a printing .bashrc (sshd's SetEnv HOME), as an account's own home would be.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/mint-ssh-exec.js';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { GatewayError, runRemote } from '../../src/index.js';
import { PROBE_EXIT } from '../../src/probe/probe.js';
import { freshDir, useSandbox } from '../support/fixture.js';
import { runMain } from '../support/cli-io.js';

const FIX = /case \$- in \*i\*\)/;

describe('a login shell that prints a banner', async () => {
  const home = await freshDir();
  await writeFile(join(home, '.bashrc'), 'echo "Welcome to the cluster"\n');
  const sandbox = useSandbox({ sshdConfig: [`SetEnv HOME=${home}`] });
  const config = async (): Promise<string> => {
    const file = join(await freshDir(), 'hosts.yaml');
    await writeFile(file, sandbox().profileYaml());
    return file;
  };
  const jobs = async (): Promise<string[]> => (existsSync(sandbox().root) ? (await readdir(sandbox().root)).filter((n) => !n.startsWith('.')) : []);

  it("(the account's shell is bash, which sshd makes read ~/.bashrc)", () => {
    const shell = execFileSync('getent', ['passwd', userInfo().username], { encoding: 'utf8' }).trim().split(':').at(-1);
    expect(shell).toMatch(/\/bash$/);
  });

  it('probe fails at the gateway step (exit 15), shows what the shell printed and names the fix', async () => {
    const r = await runMain(main, ['probe', 'sandbox', '--config', await config()]);
    expect(r.code).toBe(PROBE_EXIT.gateway);
    expect(r.code).toBe(15);
    expect(r.stdout).toMatch(/\[FAIL\] gateway .*login shell prints.*Welcome to the cluster/);
    expect(r.stdout).toMatch(FIX);
    expect(r.stdout).toContain('verdict: NOT READY (failed at gateway)');
  });

  it('a job fails with a typed error that names the same fix, not a bare transfer failure', async () => {
    const before = await jobs();
    const input = join(await freshDir(), 'in.txt');
    await writeFile(input, 'x\n');
    const error = await runRemote({ host: sandbox().host, inputs: [input], outputDir: await freshDir() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'GATEWAY_PROTOCOL', step: 'upload', retryable: false });
    // A small job goes by jobx, whose greeting finds the banner before anything is sent (rsync's
    // own greeting does for larger ones: "is your shell clean?").
    expect((error as GatewayError).message).toMatch(/greeting does not start the stream.*Welcome to the cluster/);
    expect((error as GatewayError).hint).toMatch(FIX);
    expect(await jobs()).toEqual(before);
  });

  it('the same through rsync (MINT_SSH_EXEC_INLINE=0, as every larger job goes): its "is your shell clean?" is explained', async () => {
    const before = await jobs();
    const input = join(await freshDir(), 'in.txt');
    await writeFile(input, 'x\n');
    process.env.MINT_SSH_EXEC_INLINE = '0';
    try {
      const error = await runRemote({ host: sandbox().host, inputs: [input], outputDir: await freshDir() }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(GatewayError);
      expect(error).toMatchObject({ code: 'GATEWAY_PROTOCOL', step: 'upload', retryable: false });
      expect((error as GatewayError).message).toMatch(/is your shell clean\?.*Welcome to the cluster/);
      expect((error as GatewayError).hint).toMatch(FIX);
      expect(await jobs()).toEqual(before);
    } finally {
      delete process.env.MINT_SSH_EXEC_INLINE;
    }
  });

  it('run on the CLI exits 205 (gateway) with the fix', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'in.txt'), 'x\n');
    const r = await runMain(main, ['run', 'sandbox', join(dir, 'in.txt'), '-o', join(dir, 'out'), '--config', await config()]);
    expect(r.code).toBe(ExitCode.GATEWAY);
    expect(r.stderr).toMatch(/Welcome to the cluster/);
    expect(r.stderr).toMatch(FIX);
  });
});
