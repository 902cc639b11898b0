/**
 * The gateway's PBS side (`--scheduler pbs`), a unit of the gateway run directly (no sshd): no PBS
 * server can be installed here, so a stand-in qsub/qstat/qdel on `--scheduler-bin` records each
 * call and replays recorded `qstat -f` outputs (test/gateway/fixtures/pbs/, sources in its
 * README). What is tested is the gateway's own part: the submission's argv, the id it keeps, the
 * state, reason and end it reads from PBS Pro's and Torque's text, one qstat for all of the root's
 * jobs, and cancel's qdel. README: PBS is not integration-tested.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { GATEWAY_SCRIPT } from '../../src/site/install.js';
import { freshDir } from '../support/fixture.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'pbs');
const A = '0f0e0d0c-0b0a-4908-8706-050403020100';
const B = '1f0e0d0c-0b0a-4908-8706-050403020100';

describe('a --scheduler pbs gateway reading recorded PBS Pro and Torque outputs', () => {
  let dir = '';
  let bin = '';
  let root = '';
  let program = '';
  const calls = (): string[] => (existsSync(join(dir, 'calls')) ? readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n') : []);
  // A new recording is a new world: the gateway's kept poll (up to 2 s old, mgw_sched_polled) goes.
  const replay = async (fixture: string): Promise<void> => {
    await copyFile(join(FIXTURES, fixture), join(dir, 'qstat.out'));
    await rm(join(root, '.mint-sched-poll'), { force: true });
  };
  const gw = (command: string, input = ''): { code: number | null; stdout: string; stderr: string; kv: Record<string, string> } => {
    const r = spawnSync('sh', [GATEWAY_SCRIPT, '--root', root, '--program', program, '--scheduler', 'pbs', '--scheduler-bin', bin, '--grace', '1', '--scheduler-args', '-q workq -W group_list=mint'], {
      env: { PATH: '/usr/bin:/bin', HOME: dir, SSH_ORIGINAL_COMMAND: command },
      input,
      encoding: 'utf8',
    });
    const kv = Object.fromEntries(r.stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    return { code: r.status, stdout: r.stdout, stderr: r.stderr, kv };
  };

  beforeAll(async () => {
    dir = await freshDir();
    bin = join(dir, 'pbs-bin');
    root = join(dir, 'root');
    await mkdir(bin, { mode: 0o755 });
    await mkdir(root, { mode: 0o700 });
    program = join(dir, 'prog.sh');
    await writeFile(program, '#!/bin/sh\necho ran\n');
    await chmod(program, 0o755);
    // Each stand-in logs its argv (one line, words joined by |); qsub answers ids 1001.pbs1,
    // 1002.pbs1 in turn; qstat replays qstat.out (a `mint-rc=N` line there is its exit status).
    const log = `printf '%s' "$(basename "$0")" >>${dir}/calls; for a in "$@"; do printf '|%s' "$a" >>${dir}/calls; done; echo >>${dir}/calls\n`;
    const scripts: Record<string, string> = {
      qsub: `#!/bin/sh\n${log}n=$(cat ${dir}/next 2>/dev/null || echo 1001); echo $((n + 1)) >${dir}/next; echo "$n.pbs1"\n`,
      qstat: `#!/bin/sh\n${log}grep -v '^mint-rc=' ${dir}/qstat.out; rc=$(sed -n 's/^mint-rc=//p' ${dir}/qstat.out); exit \${rc:-0}\n`,
      qdel: `#!/bin/sh\n${log}exit 0\n`,
    };
    for (const [name, body] of Object.entries(scripts)) {
      await writeFile(join(bin, name), body);
      await chmod(join(bin, name), 0o755);
    }
  });

  it('submits batch.sh with the site args first and the gateway\'s own after, PBS Pro resources, and keeps NUMBER.SERVER', async () => {
    await replay('pbspro-queued-running.txt');
    const hex = (s: string): string => Buffer.from(s).toString('hex');
    const started = gw(`mint-gw startx ${A}`, `cpus ${hex('4')}\nmemory_mb ${hex('8000')}\nwalltime_min ${hex('90')}\n`);
    expect(started.code, started.stderr).toBe(0);
    expect(started.kv).toMatchObject({ state: 'queued', sched: 'pbs', sched_id: '1001.pbs1', sched_state: 'Q' });
    const qsub = calls().find((c) => c.startsWith('qsub|'))!.split('|');
    expect(qsub).toEqual([
      'qsub', '-q', 'workq', '-W', 'group_list=mint',
      '-N', 'mint-0f0e0d0c', '-o', `${root}/${A}/sched.out`, '-j', 'oe', '-S', '/bin/sh',
      '-l', 'walltime=1:30:00', '-l', 'select=1:ncpus=4:mem=8000mb',
      `${root}/${A}/batch.sh`,
    ]);
    expect(readFileSync(join(root, A, 'sched_id'), 'utf8')).toBe('1001.pbs1\n');
    // A retried start finds the id: nothing is submitted twice.
    gw(`mint-gw startx ${A}`, `cpus ${hex('4')}\nmemory_mb ${hex('8000')}\nwalltime_min ${hex('90')}\n`);
    expect(calls().filter((c) => c.startsWith('qsub|'))).toHaveLength(1);
  });

  it('reads Q with its comment as the reason, and R as running, from one qstat -f for all the root\'s jobs', async () => {
    expect(gw(`mint-gw start ${B}`).code).toBe(0);
    await replay('pbspro-queued-running.txt');
    const before = calls().length;
    const a = gw(`mint-gw status ${A}`);
    expect(a.kv).toMatchObject({ state: 'queued', sched_state: 'Q', sched_reason: 'Not_Running:_Insufficient_amount_of_resource:_ncpus__R:_4_A:_2_T:_' });
    const b = gw(`mint-gw status ${B}`);
    expect(b.kv).toMatchObject({ state: 'running', sched_id: '1002.pbs1', sched_state: 'R' });
    const qstats = calls().slice(before);
    // One, or two when B's start fell in the same second as the first poll (a snapshot must
    // postdate a job's submission to answer for it).
    expect(qstats.length).toBeGreaterThanOrEqual(1);
    expect(qstats.length).toBeLessThanOrEqual(2);
    // Both jobs' ids in each call: one qstat answers for every job of the root.
    for (const c of qstats) expect(c.split('|').sort()).toEqual(['-f', '1001.pbs1', '1002.pbs1', 'qstat']);
  });

  it('a finished job: PBS Pro\'s F with a negative Exit_status and no exit file is lost (the reason says which); one PBS no longer shows is gone', async () => {
    await replay('pbspro-finished.txt');
    const b = gw(`mint-gw status ${B}`);
    // The runner never wrote its exit file (killed for its walltime: PBS's -29).
    expect(b.kv).toMatchObject({ state: 'lost', sched_state: 'F', sched_reason: 'exit_status=-29' });
    expect(readFileSync(join(root, B, 'sched_final'), 'utf8')).toBe('F exit_status=-29\n');
    // A's exit file is in: exited, whatever PBS says; and PBS has dropped it (status 35).
    await writeFile(join(root, A, 'exit'), '0\n');
    const a = gw(`mint-gw status ${A}`);
    expect(a.kv).toMatchObject({ state: 'exited', exit: '0', sched_state: 'GONE', sched_reason: 'forgotten-by-scheduler' });
    // Both are final now: no qstat is needed for either.
    const before = calls().length;
    expect(gw(`mint-gw status ${A}`).kv).toMatchObject({ state: 'exited', sched_state: 'GONE' });
    expect(gw(`mint-gw status ${B}`).kv).toMatchObject({ state: 'lost', sched_state: 'F' });
    expect(calls().length).toBe(before);
  });

  it('Torque: C with exit_status and no exit file is lost, H is queued; a server that does not answer is no end at all', async () => {
    const c = '2f0e0d0c-0b0a-4908-8706-050403020100';
    const d = '3f0e0d0c-0b0a-4908-8706-050403020100';
    await writeFile(join(dir, 'next'), '1001');
    expect(gw(`mint-gw start ${c}`).kv).toMatchObject({ sched_id: '1001.pbs1' });
    expect(gw(`mint-gw start ${d}`).kv).toMatchObject({ sched_id: '1002.pbs1' });
    await replay('unreachable.txt');
    expect(gw(`mint-gw status ${c}`).kv).toMatchObject({ state: 'running', sched_state: 'UNREACHABLE' });
    await replay('torque-completed-held.txt');
    expect(gw(`mint-gw status ${d}`).kv).toMatchObject({ state: 'queued', sched_state: 'H', sched_reason: 'job_held_by_user_mint' });
    expect(gw(`mint-gw status ${c}`).kv).toMatchObject({ state: 'lost', sched_state: 'C', sched_reason: 'exit_status=3' });
  });

  it('cancel: the marker, then qdel; after the grace qdel -W force; a held job never runs', async () => {
    const d = '3f0e0d0c-0b0a-4908-8706-050403020100';
    await replay('torque-completed-held.txt');
    const before = calls().length;
    const r = gw(`mint-gw cancel ${d}`);
    // The stand-in's qstat keeps saying H: the gateway waits its grace (1 s), forces, and answers.
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(root, d, 'cancelled'))).toBe(true);
    const qdels = calls().slice(before).filter((l) => l.startsWith('qdel|'));
    expect(qdels).toEqual(['qdel|1002.pbs1', 'qdel|-W|force|1002.pbs1']);
  });
});
