/**
 * The gateway is POSIX sh: shellcheck-clean for sh and dash, and it behaves the same under dash
 * (Debian's /bin/sh) and bash (/bin/sh on other distributions) for every verb and refusal.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GATEWAY_SCRIPT } from '../../src/site/install.js';
import { verifyAuditLog } from '../../src/site/audit-chain.js';
import { freshDir } from '../support/fixture.js';

describe('gateway script as POSIX sh', () => {
  it.each(['sh', 'dash'])('passes shellcheck -s %s (the gateway and the sh-only installer)', (dialect) => {
    const r = spawnSync('shellcheck', ['-s', dialect, GATEWAY_SCRIPT, join(dirname(GATEWAY_SCRIPT), 'mint-gateway-install.sh')], { encoding: 'utf8' });
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
      'mint-gw list long',
      'mint-gw list short',
      'mint-gw list long long',
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
        let stdout = r.stdout.replace(/^pid=\d+$/m, 'pid=N').replace(/^state=running$/m, 'state=R').replace(/ age=\d+$/gm, ' age=S');
        if (stdout.includes('state=R')) stdout = stdout.replace(/^log_bytes=\d+$/m, 'log_bytes=N');
        // audit=: the hash of the take's own audit line, whose time and req differ from run to run.
        const stderr = r.stderr.replace(/pid=\d+/g, 'pid=N').replace(/ audit=[0-9a-f]{64}/g, ' audit=H').replace(/\n/g, '|').replace(/mint-gw: status: .*/, '');
        return `${command} -> ${r.status} ${stdout.replace(/\n/g, '|')} ${stderr}`;
      });
    const dash = answers('dash');
    const bash = answers('bash');
    expect(bash).toEqual(dash);
    expect(dash.find((a) => a.startsWith('mint-gw probe;id'))).toContain('-> 64');
    // list long: the plain line, then the job dir's du -sk and its age; any other argument is refused.
    expect(dash.find((a) => a.startsWith('mint-gw list long ->'))).toMatch(new RegExp(`^mint-gw list long -> 0 ${job} exited exit=0 kb=\\d+ age=S\\| $`));
    expect(dash.find((a) => a.startsWith('mint-gw list short'))).toContain("-> 64  mint-gw: error: E_USAGE: 'list' takes no arguments, or long");
    expect(dash.find((a) => a.startsWith('mint-gw list long long'))).toContain("-> 64  mint-gw: error: E_USAGE: 'list' takes no arguments, or long");
    expect(dash.filter((a) => a.startsWith(`mint-gw run ${other}`))).toEqual([
      `mint-gw run ${other} x -> 0 ran x| mint-gw: started: job=${other} state=running pid=N|`,
      `mint-gw run ${other} x -> 0 ran x| mint-gw: started: job=${other} state=exited pid=-|`,
    ]);
  });

  it('audits the same outcomes under dash and bash: accepted then ok, refused, a program that exits 3, a cancel', async () => {
    const dir = await freshDir();
    const program = join(dir, 'prog.sh');
    await writeFile(program, '#!/bin/sh\ncase $1 in three) exit 3 ;; sleep) exec sleep 30 ;; esac\n');
    await chmod(program, 0o755);
    const stories: string[][] = [];
    for (const shell of ['dash', 'bash']) {
      const root = join(dir, `root-${shell}`);
      await mkdir(root, { mode: 0o700 });
      const job = '4f0e0d0c-0b0a-4908-8706-050403020100';
      const other = '5f0e0d0c-0b0a-4908-8706-050403020100';
      const gw = (command: string): number | null =>
        spawnSync(shell, [GATEWAY_SCRIPT, '--root', root, '--program', program, '--grace', '1'], {
          env: { PATH: '/usr/bin:/bin', HOME: dir, SSH_CONNECTION: '127.0.0.9 5 127.0.0.1 22', SSH_ORIGINAL_COMMAND: command },
        }).status;
      expect(gw('mint-gw list')).toBe(0);
      expect(gw(`mint-gw status ${job}`)).toBe(67);
      expect(gw(`mint-gw run ${job} three`)).toBe(0);
      expect(gw(`mint-gw start ${other} sleep`)).toBe(0);
      expect(gw(`mint-gw cancel ${other}`)).toBe(0);
      const lines = readFileSync(join(root, '.mint-gateway-audit.log'), 'utf8').split('\n').slice(0, -1);
      const reqs = new Map<string, string>();
      stories.push(
        lines.map((l) => {
          const [, req, rest] = / key=mint from=127\.0\.0\.9 req=(\d+\.\d+) (verb=.*)$/.exec(l) ?? [];
          if (req && !reqs.has(req)) reqs.set(req, `r${reqs.size}`);
          return `${req ? reqs.get(req) : '?'} ${rest ?? l}`;
        }),
      );
    }
    expect(stories[1]).toEqual(stories[0]);
    expect(stories[0]).toEqual([
      'r0 verb=list job=- decision=accepted',
      'r0 verb=list job=- outcome=ok exit=0',
      'r1 verb=status job=4f0e0d0c-0b0a-4908-8706-050403020100 decision=refused:E_NOJOB exit=67',
      'r2 verb=run job=4f0e0d0c-0b0a-4908-8706-050403020100 decision=accepted',
      'r2 verb=program job=4f0e0d0c-0b0a-4908-8706-050403020100 outcome=failed exit=3',
      'r2 verb=run job=4f0e0d0c-0b0a-4908-8706-050403020100 outcome=ok exit=0',
      'r3 verb=start job=5f0e0d0c-0b0a-4908-8706-050403020100 decision=accepted',
      'r3 verb=start job=5f0e0d0c-0b0a-4908-8706-050403020100 outcome=ok exit=0',
      'r4 verb=cancel job=5f0e0d0c-0b0a-4908-8706-050403020100 decision=accepted',
      'r3 verb=program job=5f0e0d0c-0b0a-4908-8706-050403020100 outcome=cancelled exit=143',
      'r4 verb=cancel job=5f0e0d0c-0b0a-4908-8706-050403020100 outcome=ok exit=0',
    ]);
  });

  it("builds the program's environment the same under dash and bash: no client variable, the site's --env, the account's umask", async () => {
    const dir = await freshDir();
    const root = join(dir, 'root');
    await mkdir(root, { mode: 0o700 });
    const program = join(dir, 'prog.sh');
    await writeFile(program, '#!/bin/sh\nenv | LC_ALL=C sort | grep -v "^PWD=\\|^SHLVL=\\|^_=\\|^MINT_JOB_" >env.txt; umask >>env.txt\n');
    await chmod(program, 0o755);
    const outputs: string[] = [];
    for (const [i, shell] of ['dash', 'bash'].entries()) {
      const job = `${i}f0e0d0c-0b0a-4908-8706-050403020100`;
      const r = spawnSync(shell, ['-c', `umask 027; exec ${shell} "$@"`, shell, GATEWAY_SCRIPT, '--root', root, '--program', program, '--env', 'SITE=a b'], {
        env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: dir, SHELL: '/bin/sh', LANG: 'xx_XX.EVIL', LC_X: '$(id);../../x', SSH_ORIGINAL_COMMAND: `mint-gw run ${job}` },
        encoding: 'utf8',
      });
      expect(r.status).toBe(0);
      outputs.push(readFileSync(join(root, job, job, 'env.txt'), 'utf8'));
    }
    expect(outputs[1]).toBe(outputs[0]);
    expect(outputs[0]).toMatch(/^HOME=.*\nPATH=\/usr\/local\/bin:\/usr\/bin:\/bin\nSHELL=\/bin\/sh\nSITE=a b\n0027\n$/);
  });

  it('treats a pid given to a stranger the same under dash and bash: lost, never signalled', async () => {
    const dir = await freshDir();
    const root = join(dir, 'root');
    await mkdir(root, { mode: 0o700 });
    const program = join(dir, 'prog.sh');
    await writeFile(program, '#!/bin/sh\n');
    await chmod(program, 0o755);
    const stranger = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' });
    try {
      for (const shell of ['dash', 'bash']) {
        const job = '2f0e0d0c-0b0a-4908-8706-050403020100';
        await mkdir(join(root, job, 'started'), { recursive: true });
        await mkdir(join(root, job, job));
        await writeFile(join(root, job, 'pid'), `${stranger.pid} 1\n`);
        const gw = (command: string): string =>
          spawnSync(shell, [GATEWAY_SCRIPT, '--root', root, '--program', program], {
            env: { PATH: '/usr/bin:/bin', HOME: dir, SSH_ORIGINAL_COMMAND: command },
            encoding: 'utf8',
          }).stdout;
        expect(gw(`mint-gw status ${job}`)).toMatch(/^state=lost$/m);
        expect(gw(`mint-gw cancel ${job}`)).toMatch(/^state=lost$/m);
        expect(() => process.kill(stranger.pid!, 0)).not.toThrow();
        gw(`mint-gw rm ${job}`);
        expect(existsSync(join(root, job))).toBe(false);
      }
    } finally {
      stranger.kill('SIGKILL');
    }
  });

  // A size-limited job root needs mount(2).
  it.runIf(process.getuid?.() === 0)('holds the free-space floor during an upload and fails closed on a full audit log, under dash and bash', async () => {
    const dir = await freshDir();
    const program = join(dir, 'prog.sh');
    await writeFile(program, '#!/bin/sh\n');
    await chmod(program, 0o755);
    const src = join(dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'big.bin'), Buffer.alloc(24 * 1024 * 1024, 3));
    for (const shell of ['dash', 'bash']) {
      const root = join(dir, `root-${shell}`);
      await mkdir(root, { mode: 0o700 });
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32m,mode=700', 'tmpfs', root]);
      try {
        const job = '3f0e0d0c-0b0a-4908-8706-050403020100';
        // rsync's remote shell runs the gateway under this shell directly, as sshd would.
        const rsh = join(dir, `rsh-${shell}.sh`);
        await writeFile(rsh, `#!/bin/sh\nexport SSH_ORIGINAL_COMMAND="mint-gw put ${job} .iLsfxCIvu"\nexec ${shell} ${GATEWAY_SCRIPT} --root ${root} --program ${program} --min-free-mb 12\n`);
        await chmod(rsh, 0o755);
        const put = spawnSync('rsync', ['-rt', `--rsh=${rsh}`, `${src}/`, 'h:x'], { encoding: 'utf8' });
        expect(put.status).not.toBe(0);
        expect(put.stderr).toMatch(/E_LIMIT: free space under the job root would fall below the site's floor of 12 MB.*job \S+ removed/);
        expect(existsSync(join(root, job))).toBe(false);
        // Fill the disk: every request is then refused, and the log holds only whole lines.
        spawnSync('dd', ['if=/dev/zero', `of=${join(root, 'filler')}`, 'bs=64k']);
        const codes = Array.from({ length: 120 }, () =>
          spawnSync(shell, [GATEWAY_SCRIPT, '--root', root, '--program', program], { env: { PATH: '/usr/bin:/bin', HOME: dir, SSH_ORIGINAL_COMMAND: 'mint-gw list' } }).status,
        );
        expect(codes).toContain(69);
        const log = readFileSync(join(root, '.mint-gateway-audit.log'), 'utf8');
        expect(log.endsWith('\n')).toBe(true);
        const lines = log.split('\n').slice(0, -1);
        for (const line of lines) expect(line).toMatch(/^\S+ prev=[0-9a-f]{64} key=mint from=- req=\S+ verb=\S+ job=\S+ (decision=\S+|decision=\S+ exit=\d+|outcome=\S+ exit=\d+)$/);
        // Every partial write was cut back before the next line chained to the log's last line.
        expect(await verifyAuditLog(join(root, '.mint-gateway-audit.log'))).toMatchObject({ ok: true, unchained: 0, problems: [] });
        expect(lines.filter((l) => l.endsWith('verb=list job=- decision=accepted')).length).toBe(codes.filter((c) => c === 0).length);
        // A log that ends exactly on a page boundary of a full disk: the refused request's write
        // leaves nothing, and nothing of the lines before it may be cut.
        await rm(join(root, 'filler'));
        const whole = `${'2026-01-01T00:00:00Z key=mint from=- verb=list job=- decision=accepted exit=0'.padEnd(127, ' ')}\n`.repeat(32);
        await writeFile(join(root, '.mint-gateway-audit.log'), whole);
        spawnSync('dd', ['if=/dev/zero', `of=${join(root, 'filler')}`, 'bs=4k']);
        const refused = spawnSync(shell, [GATEWAY_SCRIPT, '--root', root, '--program', program], { env: { PATH: '/usr/bin:/bin', HOME: dir, SSH_ORIGINAL_COMMAND: 'mint-gw list' } });
        expect(refused.status).toBe(69);
        expect(readFileSync(join(root, '.mint-gateway-audit.log'), 'utf8')).toBe(whole);
      } finally {
        execFileSync('umount', [root]);
      }
    }
  }, 60_000);

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
