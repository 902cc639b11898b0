/**
 * A private single-node Slurm cluster for the cluster tests: munged with its own key and socket,
 * slurmctld and slurmd on loopback ports chosen free at run time, all state, spool, logs and pid
 * files in one temp dir, no systemd and nothing under /run. Adapted from the feasibility study's
 * up/down scripts (measured there: about 1 s up, 4-5 s down). Needs root (slurmd setuids to the
 * job's owner) and the packages `munge slurmctld slurmd slurm-client` (scripts/setup.mjs --test).
 *
 * Pitfalls it avoids, each seen on this machine:
 * - SlurmdSpoolDir must stay 0755: slurmstepd execs SPOOL/jobN/slurm_script as the job's owner
 *   (0700 gave `execve(): Permission denied`, ExitCode=13:0);
 * - DIR, etc/ and munge/ are 0755 so that a submitting account can read slurm.conf and reach the
 *   munge socket, which Slurm finds only through AuthInfo=socket= (the cluster tests submit and run
 *   as the unprivileged site account, test/support/site-account.ts, so this is exercised);
 * - CommunicationParameters=NoCtldInAddrAny,NoInAddrAny, or the daemons listen on 0.0.0.0;
 * - batch_sched_delay=0: the default scheduled each job on a 3 s tick (1.5-3 s per job, 0.7-1 s with it);
 * - job steps outlive slurmd: stop() cancels every job first, then sweeps DIR for leftovers.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, killLeftovers } from './cluster.js';
import { afterAll, beforeAll } from 'vitest';

export interface SlurmCluster {
  dir: string;
  /** The slurm.conf every client command needs (SLURM_CONF). */
  conf: string;
  node: string;
  ctldPort: number;
  /** Runs a Slurm client command against this cluster (as root, or as the account `as` names); stdout. */
  run: (command: string, args: string[], as?: { uid: number; gid: number }) => string;
  /** Stops every daemon and job, removes the dir; leaves no process behind. */
  stop: () => Promise<void>;
}

export interface SlurmOptions {
  /** Seconds a finished job stays visible to squeue/scontrol (Slurm's default is 300). */
  minJobAge?: number;
  cpus?: number;
}

const NEEDED = ['munged', 'mungekey', 'slurmctld', 'slurmd', 'sinfo', 'sbatch', 'squeue', 'scancel'];

/**
 * Why the cluster tests cannot run here (only: not root), or undefined when they can. Missing
 * packages are not a reason to skip: startSlurm fails, naming them and the set-up that installs them.
 */
export function slurmUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'the private Slurm needs root (slurmd must setuid to the job owner)';
  return undefined;
}

function missingPackages(): string | undefined {
  const missing = NEEDED.filter((b) => spawnSync('sh', ['-c', `command -v ${b}`], { stdio: 'ignore' }).status !== 0);
  if (missing.length > 0) return `missing ${missing.join(', ')}: run node scripts/setup.mjs --test (installs munge slurmctld slurmd slurm-client)`;
  return undefined;
}

export async function startSlurm(options: SlurmOptions = {}): Promise<SlurmCluster> {
  const why = slurmUnavailable() ?? missingPackages();
  if (why) throw new Error(why);
  const dir = await mkdtemp(join(tmpdir(), 'mint-slurm-'));
  const conf = join(dir, 'etc', 'slurm.conf');
  const sock = join(dir, 'munge', 'munge.socket');
  const node = 'mintci1';
  const ctldPort = await freePort();
  let slurmdPort = await freePort();
  while (slurmdPort === ctldPort) slurmdPort = await freePort();
  const env = { ...process.env, SLURM_CONF: conf };
  const run = (command: string, args: string[], as?: { uid: number; gid: number }): string =>
    execFileSync(command, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...(as ? { uid: as.uid, gid: as.gid, cwd: '/' } : {}) });
  const cluster: SlurmCluster = { dir, conf, node, ctldPort, run, stop: () => stopSlurm(dir, conf) };
  try {
    for (const sub of ['etc', 'munge', 'state', 'spool', 'log', 'run']) await mkdir(join(dir, sub));
    for (const sub of ['', 'etc', 'munge', 'spool']) await chmod(join(dir, sub), 0o755);
    execFileSync('mungekey', ['--create', `--keyfile=${join(dir, 'munge', 'munge.key')}`], { stdio: 'pipe' });
    await chmod(join(dir, 'munge', 'munge.key'), 0o600);
    await writeFile(join(dir, 'etc', 'plugstack.conf'), '');
    await writeFile(
      conf,
      [
        '# private test Slurm, written by test/support/slurm.ts',
        'ClusterName=mintci',
        'SlurmctldHost=localhost',
        `SlurmctldPort=${ctldPort}`,
        `SlurmdPort=${slurmdPort}`,
        'CommunicationParameters=NoCtldInAddrAny,NoInAddrAny',
        'SlurmUser=root',
        'SlurmdUser=root',
        'AuthType=auth/munge',
        `AuthInfo=socket=${sock}`,
        'CredType=cred/munge',
        `StateSaveLocation=${dir}/state`,
        `SlurmdSpoolDir=${dir}/spool`,
        `SlurmctldPidFile=${dir}/run/slurmctld.pid`,
        `SlurmdPidFile=${dir}/run/slurmd.pid`,
        `SlurmctldLogFile=${dir}/log/slurmctld.log`,
        `SlurmdLogFile=${dir}/log/slurmd.log`,
        `PlugStackConfig=${dir}/etc/plugstack.conf`,
        'ProctrackType=proctrack/linuxproc',
        'TaskPlugin=task/none',
        'JobAcctGatherType=jobacct_gather/none',
        'AccountingStorageType=accounting_storage/none',
        'JobCompType=jobcomp/none',
        'SelectType=select/cons_tres',
        'SelectTypeParameters=CR_Core',
        'SchedulerType=sched/backfill',
        'SchedulerParameters=batch_sched_delay=0',
        'MpiDefault=none',
        'MailProg=/bin/true',
        'ReturnToService=2',
        `MinJobAge=${options.minJobAge ?? 300}`,
        // A TERM-ignoring program is KILLed this many seconds after scancel or its time limit.
        'KillWait=2',
        'SlurmctldTimeout=30',
        'SlurmdTimeout=30',
        `NodeName=${node} NodeHostname=${hostname().split('.')[0]} NodeAddr=127.0.0.1 CPUs=${options.cpus ?? 2} RealMemory=1024 State=UNKNOWN`,
        'PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP',
        '',
      ].join('\n'),
    );
    execFileSync(
      'munged',
      [`--socket=${sock}`, `--key-file=${join(dir, 'munge', 'munge.key')}`, `--pid-file=${join(dir, 'run', 'munged.pid')}`, `--log-file=${join(dir, 'log', 'munged.log')}`, `--seed-file=${join(dir, 'munge', 'munged.seed')}`],
      { stdio: 'pipe' },
    );
    execFileSync('slurmctld', ['-f', conf], { env, stdio: 'pipe' });
    execFileSync('slurmd', ['-f', conf, '-N', node], { env, stdio: 'pipe' });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const state = spawnSync('sinfo', ['-h', '-N', '-n', node, '-o', '%T'], { env, encoding: 'utf8' }).stdout.trim();
      if (['idle', 'mixed', 'allocated'].includes(state)) break;
      if (Date.now() > deadline) throw new Error(`private Slurm: node ${node} not idle after 60 s (state '${state}'); logs in ${dir}/log`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return cluster;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

function pidOf(dir: string, name: string): number | undefined {
  const file = join(dir, 'run', `${name}.pid`);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    // Only our instance: its command line names our dir (a reused pid would not).
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir) ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function stopDaemon(dir: string, name: string): Promise<void> {
  const pid = pidOf(dir, name);
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 100));
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

async function stopSlurm(dir: string, conf: string): Promise<void> {
  if (!existsSync(dir)) return;
  const env = { ...process.env, SLURM_CONF: conf };
  if (pidOf(dir, 'slurmctld') !== undefined) {
    // Job steps outlive slurmd: cancel every job first and give them a moment to end.
    spawnSync('scancel', ['--full', '--user=root'], { env, stdio: 'ignore' });
    const ids = spawnSync('squeue', ['-h', '-o', '%i'], { env, encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) spawnSync('scancel', ids, { env, stdio: 'ignore' });
    for (let i = 0; i < 50; i++) {
      if (spawnSync('squeue', ['-h', '-o', '%i'], { env, encoding: 'utf8' }).stdout.trim() === '') break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  // slurmd and slurmctld take about 2 s each on TERM: together, then munged.
  await Promise.all([stopDaemon(dir, 'slurmd'), stopDaemon(dir, 'slurmctld')]);
  await stopDaemon(dir, 'munged');
  // Leftovers: a process whose cwd or an open file lies under our dir (a job that outlived slurmd).
  killLeftovers(dir);
  await rm(dir, { recursive: true, force: true });
}

/** One private cluster for the calling test file; stopped after it. */
export function useSlurm(options: SlurmOptions = {}): () => SlurmCluster {
  let cluster: SlurmCluster | undefined;
  beforeAll(async () => {
    cluster = await startSlurm(options);
  }, 90_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);
  return () => {
    if (!cluster) throw new Error('slurm not started');
    return cluster;
  };
}
