/**
 * The installer for sites without Node (src/assets/mint-gateway-install.sh), run under dash: it
 * writes exactly the line the Node installer writes, for every option, with the same idempotence;
 * and it runs where no `node` exists at all (a mount namespace hides the binary; skipped with the
 * reason printed where one cannot be made).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { install } from '../../src/site/install.js';
import { siteHome } from '../support/site-home.js';

const ROOT = join(import.meta.dirname, '..', '..');
const INSTALLER = join(ROOT, 'src', 'assets', 'mint-gateway-install.sh');

function sh(home: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('dash', [INSTALLER, ...args], { env: { HOME: home, PATH: '/usr/bin:/bin' }, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const CASES: Array<{ args: string[]; gateway: Record<string, unknown>; restrictions?: Record<string, unknown> }> = [
  { args: [], gateway: {} },
  { args: ['--key-name', 'mint-prod', '--export', 'results/*,*.csv', '--max-jobs', '2', '--min-free-mb', '100'], gateway: { keyName: 'mint-prod', export: 'results/*,*.csv', maxJobs: 2, minFreeMb: 100 } },
  {
    args: ['--max-age-days', '7', '--min-free-inodes', '5000', '--max-job-mb', '2048', '--max-job-files', '10000', '--client-timeout', '300', '--env', 'LANG=ja_JP.UTF-8', '--env', 'SLURM_CONF=/etc/slurm/slurm.conf'],
    gateway: { maxAgeDays: 7, minFreeInodes: 5000, maxJobMb: 2048, maxJobFiles: 10000, clientTimeout: 300, env: ['LANG=ja_JP.UTF-8', 'SLURM_CONF=/etc/slurm/slurm.conf'] },
  },
  { args: ['--rsync', '/opt/rsync/bin/rsync', '--allow-unconfined-rsync', '--grace', '5'], gateway: { rsync: '/opt/rsync/bin/rsync', allowUnconfinedRsync: true, grace: 5 } },
  { args: ['--from', '192.0.2.0/24,!192.0.2.9', '--expiry-time', '20271231'], gateway: {}, restrictions: { from: '192.0.2.0/24,!192.0.2.9', expiryTime: '20271231' } },
  { args: ['--cert-authority', '--principals', 'mint,mint-batch'], gateway: {}, restrictions: { certAuthority: true, principals: 'mint,mint-batch' } },
  {
    args: ['--program', 'aster=/opt/aster/run.sh', '--program', 'abaqus=/opt/abaqus/run.sh', '--allow-env', 'OMP_NUM_THREADS,MINT_CASE', '--env', 'LANG=C.UTF-8'],
    gateway: { programs: { aster: '/opt/aster/run.sh', abaqus: '/opt/abaqus/run.sh' }, allowEnv: ['OMP_NUM_THREADS', 'MINT_CASE'], env: ['LANG=C.UTF-8'] },
  },
  {
    args: ['--scheduler', 'slurm', '--scheduler-args', '--partition=short --account=mint -q normal --time=30', '--max-cpus', '8', '--max-memory-mb', '16000', '--max-walltime-min', '120', '--env', 'SLURM_CONF=/etc/slurm/slurm.conf'],
    gateway: { scheduler: 'slurm', schedulerArgs: '--partition=short --account=mint -q normal --time=30', maxCpus: 8, maxMemoryMb: 16000, maxWalltimeMin: 120, env: ['SLURM_CONF=/etc/slurm/slurm.conf'] },
  },
];

describe('the sh-only installer', () => {
  it.each(CASES.map((c, i) => [i, c] as const))('case %i: the same line as the Node installer', async (_i, c) => {
    const { home, pub, program } = await siteHome();
    const r = sh(home, ['--key', join(home, 'mint.pub'), '--program', program, ...c.args, '--print']);
    expect(r.stderr).toBe('');
    const node = await install({
      publicKey: pub,
      gatewayPath: join(home, '.mint', 'mint-gateway.sh'),
      authorizedKeys: join(home, '.ssh', 'authorized_keys'),
      gateway: { root: join(home, 'mint-jobs'), program, ...c.gateway } as never,
      ...(c.restrictions ? { restrictions: c.restrictions as never } : {}),
      print: true,
    });
    expect(r.stdout).toBe(`${node.line}\n`);
  });

  it('installs, finds its line again by the key (unchanged, updated in place), keeps other lines and the mode', async () => {
    const { home, program } = await siteHome();
    const keys = join(home, '.ssh', 'authorized_keys');
    execFileSync('mkdir', ['-p', join(home, '.ssh')]);
    await writeFile(keys, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOtherKey0 someone\n');
    await chmod(keys, 0o640);
    const first = sh(home, ['--key', join(home, 'mint.pub'), '--program', program]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^added the mint-gateway line in /);
    expect((await stat(join(home, '.mint', 'mint-gateway.sh'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(home, 'mint-jobs'))).mode & 0o777).toBe(0o700);
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--program', program]).stdout).toMatch(/^unchanged /);
    const updated = sh(home, ['--key', join(home, 'mint.pub'), '--program', program, '--max-jobs', '3']);
    expect(updated.stdout).toMatch(/^updated /);
    const lines = (await readFile(keys, 'utf8')).trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/ someone$/);
    expect(lines[1]).toMatch(/^restrict,command=".* --max-jobs 3" ssh-ed25519 /);
    expect((await stat(keys)).mode & 0o777).toBe(0o640);
    // The Node installer sees the sh installer's line as its own.
    const node = await install({
      publicKey: await readFile(join(home, 'mint.pub'), 'utf8'),
      gatewayPath: join(home, '.mint', 'mint-gateway.sh'),
      authorizedKeys: keys,
      gateway: { root: join(home, 'mint-jobs'), program, maxJobs: 3 },
    });
    expect(node.action).toBe('unchanged');
  });

  it('refuses what the Node installer refuses, with one line saying why', async () => {
    const { home, program } = await siteHome();
    const bad = join(home, 'bad.pub');
    await writeFile(bad, 'ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIF5JKsuflqp9Iut/0wdVF4FhZ59v3S7ipX49mcvI5JoN x\n');
    expect(sh(home, ['--key', bad, '--program', program, '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/the key says ssh-rsa but its data is|does not decode to an SSH key/) });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--export', "a'b", '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/--export holds a character/) });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--env', 'X=a"b', '--print'])).toMatchObject({ code: 1 });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--root', 'relative', '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/absolute path/) });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--principals', 'a', '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/needs --cert-authority/) });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--bogus', 'x'])).toMatchObject({ code: 2 });
    // A root the gateway would refuse is refused before anything changes (the home dir keeps its mode).
    const before = (await stat(home)).mode;
    for (const root of [home, join(home, '.ssh'), join(home, '.ssh', 'jobs')]) {
      expect(sh(home, ['--key', join(home, 'mint.pub'), '--program', program, '--root', root])).toMatchObject({ code: 1, stderr: expect.stringMatching(/home dir, holds ~\/\.ssh or is inside it/) });
    }
    expect((await stat(home)).mode).toBe(before);
    expect(existsSync(join(home, '.mint'))).toBe(false);
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--allow-env', 'MINT_CASE,BASH_ENV', '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/run code of its choosing/) });
    // Schedulers: site submission options are tokens of plain bytes and may not take over what
    // the gateway sets for that scheduler.
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--scheduler', 'lsf', '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/--scheduler must be slurm, sge, pbs or none/) });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--scheduler', 'sge', '--scheduler-args', '-q all.q -b y', '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/may not set '-b'/) });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--scheduler', 'pbs', '--scheduler-args', '-W block=true', '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/may not set 'block=true'/) });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--scheduler', 'pbs', '--scheduler-bin', 'opt/pbs', '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/absolute path/) });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--scheduler', 'slurm', '--scheduler-args', '--partition=a;id', '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/byte outside/) });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--scheduler', 'slurm', '--scheduler-args', '-p a --output=/tmp/x', '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/may not set '--output=\/tmp\/x'/) });
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--scheduler-args', '-p a', '--print'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/needs --scheduler slurm/) });
  });

  it('runs where there is no node at all', async () => {
    const { home, program } = await siteHome();
    const probe = spawnSync('unshare', ['-m', 'true']);
    if (probe.status !== 0) {
      process.stdout.write(`[sh-install] SKIPPED the no-node run: unshare -m is not allowed here (${probe.stderr?.toString().trim()})\n`);
      return;
    }
    const script = `mount --bind /dev/null "$(command -v node)" && ! node -e 1 2>/dev/null && exec dash '${INSTALLER}' --key '${join(home, 'mint.pub')}' --program '${program}'`;
    const r = spawnSync('unshare', ['-m', 'sh', '-c', script], { env: { HOME: home, PATH: process.env.PATH ?? '/usr/bin:/bin' }, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^added the mint-gateway line in /);
    expect(await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8')).toMatch(/^restrict,command="/);
  });

  it('--enforce-job-scope: the same line as mint-gateway install, and both doctors give job-scope the same verdict', async () => {
    const { home, program } = await siteHome();
    const args = ['--key', join(home, 'mint.pub'), '--program', program, '--cert-authority', '--enforce-job-scope'];
    const ours = sh(home, [...args, '--print']);
    expect(ours.code, ours.stderr).toBe(0);
    expect(ours.stdout).toMatch(/^cert-authority,restrict,command="\S+ --root \S+ --program \S+ --enforce-job-scope" ssh-ed25519 /);
    const theirs = spawnSync(process.execPath, [join(ROOT, 'bin', 'mint-gateway.mjs'), 'install', ...args, '--print'], { env: { ...process.env, HOME: home }, encoding: 'utf8' });
    expect(theirs.stdout).toBe(ours.stdout);
    expect(sh(home, args).code).toBe(0);
    const scope = (text: string): string | undefined => /^\s+\[\s*([A-Za-z]+)\s*\]\s+job-scope\s+(.*)$/m.exec(text)?.slice(1).join(' ');
    const shDoctor = spawnSync('dash', [INSTALLER, 'doctor', '--program', program], { env: { HOME: home, PATH: '/usr/bin:/bin' }, encoding: 'utf8' });
    const nodeDoctor = spawnSync(process.execPath, [join(ROOT, 'bin', 'mint-gateway.mjs'), 'doctor', '--program', program], { env: { ...process.env, HOME: home }, encoding: 'utf8' });
    // This machine's sshd (ExposeAuthInfo no unless set) as root, or SKIPPED where sshd -T cannot be read: the same either way.
    expect(scope(shDoctor.stdout)).toMatch(/^(FAIL the line says --enforce-job-scope but sshd has ExposeAuthInfo no|ok enforced|SKIPPED could not read)/);
    expect(scope(shDoctor.stdout)).toBe(scope(nodeDoctor.stdout));
    expect(shDoctor.status).toBe(nodeDoctor.status);
  });

  it('doctor: the same checks and verdicts as mint-gateway doctor, healthy and broken', async () => {
    const { home, program } = await siteHome();
    expect(sh(home, ['--key', join(home, 'mint.pub'), '--program', program]).code).toBe(0);
    const verdicts = (text: string): string[] =>
      text
        .split('\n')
        .map((l) => /^\s+\[\s*([A-Za-z]+)\s*\]\s+(\S+)/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        // Node also times the login shell (warn when slow); sh cannot, so both count as ok here.
        .map((m) => `${m[2]} ${m[2] === 'login-shell' && m[1] === 'warn' ? 'ok' : m[1]}`);
    const compare = (expectCode: number): void => {
      const ours = spawnSync('dash', [INSTALLER, 'doctor', '--program', program], { env: { HOME: home, PATH: '/usr/bin:/bin' }, encoding: 'utf8' });
      const theirs = spawnSync(process.execPath, [join(ROOT, 'bin', 'mint-gateway.mjs'), 'doctor', '--program', program], { env: { ...process.env, HOME: home }, encoding: 'utf8' });
      expect(verdicts(ours.stdout)).toHaveLength(14);
      expect(verdicts(ours.stdout)).toEqual(verdicts(theirs.stdout));
      expect([ours.status, theirs.status]).toEqual([expectCode, expectCode]);
    };
    compare(0);
    await chmod(join(home, '.ssh', 'authorized_keys'), 0o666);
    await chmod(program, 0o644);
    await writeFile(join(home, '.ssh', 'rc'), 'echo hi\n');
    await writeFile(join(home, '.ssh', 'authorized_keys'), (await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8')).replace('restrict,', ''));
    compare(1);
  });
});
