/**
 * A private single-host Son of Grid Engine cell for the cluster tests: sge_qmaster and sge_execd
 * with their own SGE_ROOT (a temp dir), cell `ci`, BerkeleyDB spool and loopback-chosen free ports,
 * no systemd. Adapted from the feasibility study's sge-up/sge-down scripts (measured there: about
 * 4 s up, 2-3 s down with the KILL after a 1 s grace). Needs root (execd setuids to the job's
 * owner) and the packages `gridengine-master gridengine-exec gridengine-client`
 * (scripts/setup.mjs --test).
 *
 * Pitfalls it avoids, each seen on this machine:
 * - 127.0.0.1 reverse-resolves to `localhost` while gethostname() says the host's name: without
 *   `HOST localhost` in host_aliases qmaster refuses every client ("local host name error");
 * - the default scheduler runs every 15 s (a job took 28 s): schedule_interval 0:0:1 and
 *   flush_submit_sec/flush_finish_sec 1 bring it to about 1 s;
 * - `min_uid 1000`/`min_gid 1000` in the default configuration refuse jobs from lower ids: the
 *   cell keeps them, as a site does; the tests' jobs are the site account's (test/support/site-account.ts,
 *   useradd gives it an id from 1000), so a job that came to run as root would be refused, not pass;
 * - sge_qmaster takes about 11 s to stop on TERM: stop() KILLs it after 1 s, the spool goes anyway;
 * - qdel is a SIGKILL with no grace (no TERM unless -notify): the cancel tests expect no exit status;
 * - the queue template's load_thresholds (np_load_avg=1.75) put all.q in alarm state `a` on this
 *   shared 2-core machine (load 4.2 seen) and no job started: the test queue has none.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, killLeftovers } from './cluster.js';
import { afterAll, beforeAll } from 'vitest';

export interface SgeCell {
  dir: string;
  /** The SGE_* variables every client command needs (for the gateway's --env). */
  env: Record<'SGE_ROOT' | 'SGE_CELL' | 'SGE_QMASTER_PORT' | 'SGE_EXECD_PORT', string>;
  host: string;
  /** Runs a Grid Engine client command against this cell (as root, or as the account `as` names); stdout. */
  run: (command: string, args: string[], as?: { uid: number; gid: number }) => string;
  /** Stops both daemons and every job, removes the dir; leaves no process behind. */
  stop: () => Promise<void>;
}

export interface SgeOptions {
  slots?: number;
}

const DAEMONS = ['/usr/sbin/sge_qmaster', '/usr/sbin/sge_execd'];
const CLIENTS = ['qsub', 'qstat', 'qdel', 'qconf'];

/** Why the SGE tests cannot run here (only: not root), or undefined when they can. */
export function sgeUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'the private Grid Engine needs root (sge_execd must setuid to the job owner)';
  return undefined;
}

function missingPackages(): string | undefined {
  const missing = [...DAEMONS.filter((d) => !existsSync(d)), ...CLIENTS.filter((b) => spawnSync('sh', ['-c', `command -v ${b}`], { stdio: 'ignore' }).status !== 0)];
  if (missing.length > 0) return `missing ${missing.join(', ')}: run node scripts/setup.mjs --test (installs gridengine-master gridengine-exec gridengine-client)`;
  return undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startSge(options: SgeOptions = {}): Promise<SgeCell> {
  const why = sgeUnavailable() ?? missingPackages();
  if (why) throw new Error(why);
  const dir = await mkdtemp(join(tmpdir(), 'mint-sge-'));
  const host = hostname();
  const qport = await freePort();
  let eport = await freePort();
  while (eport === qport) eport = await freePort();
  const root = join(dir, 'root');
  const cellEnv = { SGE_ROOT: root, SGE_CELL: 'ci', SGE_QMASTER_PORT: String(qport), SGE_EXECD_PORT: String(eport) };
  const arch = execFileSync('/usr/share/gridengine/util/arch', { encoding: 'utf8' }).trim();
  const env = { ...process.env, ...cellEnv, PATH: `/usr/bin:/bin:/usr/sbin:/sbin:${root}/bin/${arch}` };
  const run = (command: string, args: string[], as?: { uid: number; gid: number }): string =>
    execFileSync(command, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...(as ? { uid: as.uid, gid: as.gid, cwd: '/' } : {}) });
  const cell: SgeCell = { dir, env: cellEnv, host, run, stop: () => stopSge(dir, env) };
  try {
    const common = join(root, 'ci', 'common');
    for (const sub of [common, join(dir, 'spool', 'db'), join(dir, 'spool', 'qmaster'), join(dir, 'spool', 'execd')]) await mkdir(sub, { recursive: true });
    await chmod(dir, 0o755);
    for (const d of ['bin', 'lib', 'utilbin']) await symlink(`/var/lib/gridengine/${d}`, join(root, d));
    await symlink('/usr/share/gridengine/util', join(root, 'util'));
    await writeFile(
      join(common, 'bootstrap'),
      [
        '# Version: 6.2',
        'admin_user sgeadmin',
        'default_domain none',
        'ignore_fqdn true',
        'spooling_method berkeleydb',
        'spooling_lib libspoolb',
        `spooling_params ${dir}/spool/db`,
        'binary_path /usr/sbin',
        `qmaster_spool_dir ${dir}/spool/qmaster`,
        'security_mode none',
        'listener_threads 2',
        'worker_threads 2',
        'scheduler_threads 1',
        '',
      ].join('\n'),
    );
    await writeFile(join(common, 'act_qmaster'), `${host}\n`);
    await writeFile(join(common, 'host_aliases'), `${host} localhost\n`);
    const global = readFileSync('/usr/share/gridengine/default-configuration', 'utf8')
      .replace(/^execd_spool_dir .*$/m, `execd_spool_dir ${dir}/spool/execd`)
      .replace(/^mailer .*$/m, 'mailer /bin/true')
      .replace(/^load_report_time .*$/m, 'load_report_time 00:00:05')
      .replace(/^reporting_params .*$/m, 'reporting_params accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00');
    await writeFile(join(dir, 'global.conf'), global);
    const init = (args: string[]): void => void execFileSync(args[0]!, args.slice(1), { env, stdio: 'pipe' });
    init(['/usr/lib/gridengine/spoolinit', 'berkeleydb', 'libspoolb', `${dir}/spool/db`, 'init']);
    init(['/usr/lib/gridengine/spooldefaults', 'configuration', join(dir, 'global.conf')]);
    init(['/usr/lib/gridengine/spooldefaults', 'complexes', '/usr/share/gridengine/util/resources/centry']);
    init(['/usr/lib/gridengine/spooldefaults', 'usersets', '/usr/share/gridengine/util/resources/usersets']);
    init(['/usr/lib/gridengine/spooldefaults', 'managers', 'sgeadmin', 'root']);
    init(['chown', '-R', 'sgeadmin:sgeadmin', join(dir, 'spool'), join(root, 'ci')]);
    execFileSync('/usr/sbin/sge_qmaster', { env, stdio: 'pipe' });
    const deadline = Date.now() + 60_000;
    while (spawnSync('qstat', ['-g', 'c'], { env, stdio: 'ignore' }).status !== 0) {
      if (Date.now() > deadline) throw new Error(`private SGE: qmaster not up after 60 s; spool in ${dir}/spool/qmaster`);
      await sleep(200);
    }
    run('qconf', ['-as', host]);
    await writeFile(join(dir, 'exechost.conf'), `hostname ${host}\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n`);
    run('qconf', ['-Ae', join(dir, 'exechost.conf')]);
    // all.q through a scripted "editor" on qconf's own template.
    const edit = join(dir, 'qedit.sh');
    await writeFile(
      edit,
      `#!/bin/sh\nsed -i -e 's|^qname .*|qname all.q|' -e 's|^hostlist .*|hostlist ${host}|' -e 's|^slots .*|slots ${options.slots ?? 2}|' -e 's|^shell .*|shell /bin/sh|' -e 's|^pe_list .*|pe_list NONE|' -e 's|^shell_start_mode .*|shell_start_mode posix_compliant|' -e 's|^load_thresholds .*|load_thresholds NONE|' "$1"\n`,
    );
    await chmod(edit, 0o755);
    execFileSync('qconf', ['-aq', 'all.q'], { env: { ...env, EDITOR: edit }, stdio: 'pipe' });
    const sched = run('qconf', ['-ssconf'])
      .replace(/^schedule_interval .*$/m, 'schedule_interval 0:0:1')
      .replace(/^flush_submit_sec .*$/m, 'flush_submit_sec 1')
      .replace(/^flush_finish_sec .*$/m, 'flush_finish_sec 1');
    await writeFile(join(dir, 'sched.conf'), sched);
    run('qconf', ['-Msconf', join(dir, 'sched.conf')]);
    execFileSync('/usr/sbin/sge_execd', { env, stdio: 'pipe' });
    for (;;) {
      // The queue instance's state column: empty when ok, `u` until execd reports.
      const line = spawnSync('qstat', ['-f', '-q', `all.q@${host}`], { env, encoding: 'utf8' }).stdout.split('\n').find((l) => l.startsWith(`all.q@${host}`));
      if (line && line.trim().split(/\s+/).length === 5) break;
      if (Date.now() > deadline) throw new Error(`private SGE: queue all.q@${host} not ready after 60 s (${line ?? 'no line'})`);
      await sleep(200);
    }
    return cell;
  } catch (error) {
    await cell.stop();
    throw error;
  }
}

function pidWithRoot(file: string | undefined, root: string): number | undefined {
  if (!file || !existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    // Only our instance: its environment names our SGE_ROOT (a reused pid would not).
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`SGE_ROOT=${root}`) ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function stopDaemon(pid: number | undefined, graceMs: number): Promise<void> {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let t = 0; t < graceMs && existsSync(`/proc/${pid}`); t += 100) await sleep(100);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

async function stopSge(dir: string, env: NodeJS.ProcessEnv): Promise<void> {
  if (!existsSync(dir)) return;
  const root = join(dir, 'root');
  const qmaster = pidWithRoot(join(dir, 'spool', 'qmaster', 'qmaster.pid'), root);
  const execdDir = join(dir, 'spool', 'execd');
  const execdPid = existsSync(execdDir) ? readdirSync(execdDir).map((h) => join(execdDir, h, 'execd.pid')).find((f) => existsSync(f)) : undefined;
  if (qmaster !== undefined) {
    spawnSync('qdel', ['-f', '-u', '*'], { env, stdio: 'ignore' });
    for (let i = 0; i < 25 && spawnSync('qstat', ['-u', '*'], { env, encoding: 'utf8' }).stdout.trim() !== ''; i++) await sleep(200);
  }
  // qmaster needs about 11 s on TERM; the spool is removed anyway: KILL after 1 s.
  await Promise.all([stopDaemon(pidWithRoot(execdPid, root), 1000), stopDaemon(qmaster, 1000)]);
  killLeftovers(dir, (environ, cmdline) => environ.includes(`SGE_ROOT=${root}`) && /sge_(shepherd|execd|qmaster)/.test(cmdline));
  await rm(dir, { recursive: true, force: true });
}

/** One private cell for the calling test file; stopped after it. */
export function useSge(options: SgeOptions = {}): () => SgeCell {
  let cell: SgeCell | undefined;
  beforeAll(async () => {
    cell = await startSge(options);
  }, 90_000);
  afterAll(async () => {
    await cell?.stop();
  }, 60_000);
  return () => {
    if (!cell) throw new Error('sge not started');
    return cell;
  };
}
