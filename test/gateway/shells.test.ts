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
        return `${command} -> ${r.status} ${stdout.replace(/\n/g, '|')} ${r.stderr.replace(/\n/g, '|').replace(/mint-gw: status: .*/, '')}`;
      });
    const dash = answers('dash');
    const bash = answers('bash');
    expect(bash).toEqual(dash);
    expect(dash.find((a) => a.startsWith('mint-gw probe;id'))).toContain('-> 64');
  });
});
