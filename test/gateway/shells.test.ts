/**
 * The gateway is POSIX sh: shellcheck-clean for sh and dash, and it behaves the same under dash
 * (Debian's /bin/sh) and bash (/bin/sh on other distributions) for every verb and refusal.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GATEWAY_SCRIPT } from '../../src/gateway/install.js';
import { freshDir } from '../support/fixture.js';

describe('gateway script as POSIX sh', () => {
  it.each(['sh', 'dash'])('passes shellcheck -s %s', (dialect) => {
    const r = spawnSync('shellcheck', ['-s', dialect, GATEWAY_SCRIPT], { encoding: 'utf8' });
    expect(r.error, 'shellcheck must be installed (npm test installs it)').toBeUndefined();
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('gives the same answers under dash and bash', async () => {
    const dir = await freshDir();
    const root = join(dir, 'root');
    await mkdir(root, { mode: 0o700 });
    const program = join(dir, 'prog.sh');
    await writeFile(program, '#!/bin/sh\necho "ran $*"\n');
    await chmod(program, 0o755);
    const job = '0f0e0d0c-0b0a-4908-8706-050403020100';
    const other = '1f0e0d0c-0b0a-4908-8706-050403020100';
    const commands = [
      'mint-gw list',
      `mint-gw status ${job}`,
      `mint-gw start ${job} a=1 b`,
      `mint-gw logs ${job} 0`,
      `mint-gw status ${job}`,
      `mint-gw start ${job}`,
      `mint-gw put ${job} .iLsfxCIvu`,
      'mint-gw list',
      `mint-gw rm ${job}`,
      `mint-gw status ${job}`,
      '',
      'mint-gw',
      'mint-gw nope',
      `mint-gw status ${job.toUpperCase()}`,
      'mint-gw probe;id',
      'mint-gw probe  ',
      '/usr/lib/openssh/sftp-server',
      `mint-gw logs ${job} -1`,
      `mint-gw run ${other} x`,
      `mint-gw run ${other} x`,
      `mint-gw take ${other} .iLsfxCIvu`,
      `mint-gw rm ${other}`,
    ];
    const answers = (shell: string): string[] =>
      commands.map((command) => {
        const r = spawnSync(shell, [GATEWAY_SCRIPT, '--root', root, '--program', program], {
          env: { PATH: '/usr/bin:/bin', HOME: dir, SSH_ORIGINAL_COMMAND: command },
          encoding: 'utf8',
        });
        // Only the parts that do not depend on time or pids.
        // (A running job's log may or may not hold its first line yet.)
        let stdout = r.stdout.replace(/^pid=\d+$/m, 'pid=N').replace(/^state=running$/m, 'state=R');
        if (stdout.includes('state=R')) stdout = stdout.replace(/^log_bytes=\d+$/m, 'log_bytes=N');
        const stderr = r.stderr.replace(/pid=\d+/g, 'pid=N').replace(/\n/g, '|').replace(/mint-gw: status: .*/, '');
        return `${command} -> ${r.status} ${stdout.replace(/\n/g, '|')} ${stderr}`;
      });
    const dash = answers('dash');
    const bash = answers('bash');
    expect(bash).toEqual(dash);
    expect(dash.find((a) => a.startsWith('mint-gw probe;id'))).toContain('-> 64');
    expect(dash.filter((a) => a.startsWith(`mint-gw run ${other}`))).toEqual([
      `mint-gw run ${other} x -> 0 ran x| mint-gw: started: job=${other} state=running pid=N|`,
      `mint-gw run ${other} x -> 0 ran x| mint-gw: started: job=${other} state=exited pid=-|`,
    ]);
  });

  // Needs root to give the directory to another account.
  it.runIf(process.getuid?.() === 0)('refuses a job root owned by another account, or open to the group, under dash and bash', async () => {
    const dir = await freshDir();
    const program = join(dir, 'prog.sh');
    await writeFile(program, '#!/bin/sh\n');
    await chmod(program, 0o755);
    const foreign = join(dir, 'foreign');
    await mkdir(foreign, { mode: 0o700 });
    execFileSync('chown', ['65534', foreign]);
    const open = join(dir, 'open');
    await mkdir(open);
    await chmod(open, 0o770);
    for (const shell of ['dash', 'bash']) {
      const probe = (root: string): { status: number | null; stderr: string } => {
        const r = spawnSync(shell, [GATEWAY_SCRIPT, '--root', root, '--program', program], {
          env: { PATH: '/usr/bin:/bin', HOME: dir, SSH_ORIGINAL_COMMAND: 'mint-gw probe' },
          encoding: 'utf8',
        });
        return { status: r.status, stderr: r.stderr };
      };
      expect(probe(foreign)).toEqual({ status: 78, stderr: `mint-gw: error: E_CONFIG: job root ${foreign} is not owned by this account\n` });
      expect(probe(open)).toEqual({ status: 78, stderr: `mint-gw: error: E_CONFIG: job root ${open} is writable by group or others (chmod 700 it)\n` });
    }
  });
});
