/**
 * A `--scheduler slurm` gateway against a real private Slurm (test/support/slurm.ts), through the
 * real sshd and the real gateway and rsync, with MInt's key logging into the unprivileged site
 * account (test/support/site-account.ts), so slurmd runs the jobs with its uid: the program runs as
 * a Slurm job (its SLURM_JOB_ID is the one the result names, its uid the account's), exit status from
 * the runner's exit file, cancel while pending and while running, an operator's scancel, a retried
 * and a doubled start (one submission), a connection cut while queued costs
 * nothing (one submission), a cut while running loses nothing (the job runs on; whole log, exit
 * status, outputs sha256-identical), a client KILLed while its job waits and attach later, resources
 * over a site maximum refused, and a job the scheduler has forgotten (MinJobAge) still read right.
 * Skipped only where not root, with the reason printed.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { attach, runRemote, type JobEvent } from '../../src/index.js';
import { CancelledError, GatewayError } from '../../src/errors.js';
import { connect } from '../../src/connection/connect.js';
import { GatewayClient } from '../../src/gateway/client.js';
import { resolveHost } from '../../src/config/resolve-host.js';
import { main } from '../../src/cli/mint-ssh-exec.js';
import { runMain } from '../support/cli-io.js';
import { readAudit } from '../support/hostile-helpers.js';
import { execFileSync } from 'node:child_process';
import { freshDir, sha256 } from '../support/fixture.js';
import { siteAccount, useSiteSandbox } from '../support/site-account.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { slurmUnavailable, useSlurm } from '../support/slurm.js';

const why = slurmUnavailable();
if (why) process.stdout.write(`[cluster tests] skipped: ${why}\n`);

// The site's program: what it does is chosen by its first argument. Slurm TERMs every process of
// the job one by one (proctrack/linuxproc), so a child may get TERM before its shell: each mode's
// exit status must not depend on that order (seen: `sleep; echo` survived as exit 0 under load).
const PROGRAM = `#!/bin/sh
case $1 in
  ok) echo "slurm job \${SLURM_JOB_ID:-none} on \${SLURM_JOB_NODELIST:-none} as \$(id -un) uid \$(id -u)"; echo done > out.txt; exit 0 ;;
  exit3) echo failing; exit 3 ;;
  # exec: no shell left to print "Terminated" into the log when Slurm TERMs its sleep first (seen in CI).
  sleep) echo started; exec sleep "$2" ;;
  ignore) trap '' TERM; echo started; sleep "$2" ;;
  # Twenty lines over about 4 s, then 3 MB of random bytes and their sha256 as the site saw them.
  stream) i=1; while [ "$i" -le 20 ]; do echo "line $i"; i=$((i + 1)); sleep 0.2; done
    head -c 3000000 /dev/urandom > out.bin; sha256sum out.bin > out.sha256; exit 4 ;;
  slowterm) trap 'sleep 0.5; echo cleaned; exit 7' TERM; echo started; while :; do sleep 0.1 || :; done ;;
esac
`;

async function program(): Promise<string> {
  const dir = await freshDir();
  const path = join(dir, 'prog.sh');
  await writeFile(path, PROGRAM);
  await chmod(path, 0o755);
  return path;
}

describe.skipIf(why !== undefined)('a --scheduler slurm gateway on a private Slurm', () => {
  const slurm = useSlurm({ minJobAge: 2, cpus: 2 });
  let prog = '';
  beforeAll(async () => {
    prog = await program();
  });
  // MInt's key logs into an unprivileged account, as on a site: slurmd runs its jobs with its uid.
  const sandbox = useSiteSandbox({ program: '/bin/true' });
  beforeAll(async () => {
    await sandbox().reinstall({ scheduler: 'slurm', env: [`SLURM_CONF=${slurm().conf}`], maxCpus: 2, maxMemoryMb: 1000, maxWalltimeMin: 30, grace: 3 });
    await writeFile(sandbox().program, PROGRAM);
  }, 60_000);

  // What the 'ok' mode prints: the job's own Slurm id and node, and the account it ran as.
  const okLog = (id: string): string => `slurm job ${id} on mintci1 as ${siteAccount().name} uid ${siteAccount().uid}\n`;
  const submissions = (): number => (readFileSync(join(slurm().dir, 'log', 'slurmctld.log'), 'utf8').match(/_slurm_rpc_submit_batch_job: JobId=/g) ?? []).length;

  it('runs the program as a Slurm job: queued, then started, its log, outputs and exit status', async () => {
    const events: JobEvent[] = [];
    const out = await freshDir();
    const t0 = performance.now();
    const r = await runRemote({ host: sandbox().host, outputDir: out, args: ['ok'], onEvent: (e) => events.push(e) });
    const ms = performance.now() - t0;
    expect(r).toMatchObject({ state: 'exited', exitCode: 0, failed: false, cleanedUp: true });
    expect(r.scheduler).toMatchObject({ id: expect.stringMatching(/^\d+$/), state: 'COMPLETED' });
    expect(r.log).toBe(okLog(r.scheduler!.id));
    // The program ran as the site's unprivileged account, not as root (slurmd setuid to it).
    expect(siteAccount().uid).not.toBe(0);
    expect(r.log).not.toMatch(/ uid 0\n/);
    expect(await readFile(join(out, 'out.txt'), 'utf8')).toBe('done\n');
    const types = events.map((e) => e.type);
    expect(types.indexOf('queued')).toBeGreaterThanOrEqual(0);
    expect(types.indexOf('queued')).toBeLessThan(types.indexOf('started'));
    expect(types.indexOf('started')).toBeLessThan(types.indexOf('exited'));
    process.stdout.write(`[cluster] runRemote through slurm, end to end: ${ms.toFixed(0)} ms\n`);
    // The program's audit line names the site's key and the request that started it (the runner
    // on the compute node once took a SLURM_* variable for that id and dropped it from the program's
    // environment: red-team finding).
    const mine = (await readAudit(sandbox().root)).filter((l) => l.raw.includes(`job=${r.jobId}`));
    const started = mine.find((l) => l.verb === 'run' && l.decision === 'accepted');
    const ran = mine.find((l) => l.verb === 'program');
    expect(ran?.raw).toMatch(/ key=mint-sandbox /);
    expect(ran?.req).toBe(started?.req);
  });

  it("what the client leaves out goes to Slurm at the site's maximum (walltime, memory) or 1 (cpus, nodes); cpus and memory count on every node", async () => {
    const host = await resolveHost(sandbox().host);
    const connection = await connect(host);
    try {
      const gateway = new GatewayClient(connection);
      const jobId = crypto.randomUUID();
      // A plain start, no request at all: it used to reach sbatch with no --time, --mem or --cpus.
      await gateway.start(jobId, ['sleep', '30']);
      const status = await gateway.status(jobId);
      const id = status.scheduler?.id ?? '';
      expect(id).toMatch(/^\d+$/);
      const shown = execFileSync('scontrol', ['show', 'job', id], { encoding: 'utf8', env: { ...process.env, SLURM_CONF: slurm().conf } });
      // Submitted by, and run as, the account the key logs into.
      expect(shown).toMatch(new RegExp(`UserId=${siteAccount().name}\\(${siteAccount().uid}\\)`));
      expect(shown).toMatch(/TimeLimit=00:30:00/);
      expect(shown).toMatch(/MinMemoryNode=1000M/);
      expect(shown).toMatch(/NumNodes=1[ -]/);
      expect(shown).toMatch(/CPUs\/Task=1 /);
      await gateway.cancel(jobId);
    } finally {
      connection.close();
    }
    const before = submissions();
    for (const [resources, what] of [
      [{ cpus: 2, nodes: 2 }, /cpus 2 per node, on 2 nodes is over the site maximum of 2 per job/],
      [{ memoryMb: 600, nodes: 2 }, /memory \(MB\) 600 per node, on 2 nodes is over the site maximum of 1000 per job/],
    ] as const) {
      const error = await runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['ok'], resources }).catch((e: unknown) => e);
      expect(error).toMatchObject({ gatewayCode: 'E_LIMIT', message: expect.stringMatching(what) });
    }
    expect(submissions()).toBe(before);
  });

  it('measures submit-to-start and end-to-result latencies (printed for the README)', async () => {
    const rows: Array<{ submitToStart: number; endToResult: number; total: number }> = [];
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      const r = await runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['ok'], cleanup: 'never' });
      const resolved = Date.now();
      const dir = join(sandbox().root, r.jobId);
      // started/ is made by start just before sbatch; ran/ by the runner as Slurm starts it; exit
      // when the program has ended.
      const mtime = (name: string): number => statSync(join(dir, name)).mtimeMs;
      rows.push({ submitToStart: mtime('ran') - mtime('started'), endToResult: resolved - mtime('exit'), total: resolved - t0 });
    }
    const fmt = (k: keyof (typeof rows)[number]): string => rows.map((r) => (r[k] / 1000).toFixed(2)).join(', ');
    process.stdout.write(`[cluster] submit-to-start s: ${fmt('submitToStart')}\n[cluster] end-to-result s: ${fmt('endToResult')}\n[cluster] runRemote total s: ${fmt('total')}\n`);
    for (const r of rows) {
      expect(r.submitToStart).toBeLessThan(10_000);
      expect(r.endToResult).toBeLessThan(10_000);
    }
  });

  it('exit status 3 comes from the exit file; Slurm agrees (FAILED)', async () => {
    const r = await runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['exit3'] });
    expect(r).toMatchObject({ state: 'exited', exitCode: 3, failed: true, log: 'failing\n' });
    expect(r.scheduler?.state).toBe('FAILED');
  });

  it('cancels a pending job (it never runs) and a running one', async () => {
    // The first job takes both CPUs, so the second waits for Resources.
    const blocker = new AbortController();
    let blockerStarted!: () => void;
    const running = new Promise<void>((r) => (blockerStarted = r));
    const first = runRemote({
      host: sandbox().host,
      outputDir: await freshDir(),
      args: ['sleep', '60'],
      resources: { cpus: 2 },
      signal: blocker.signal,
      onEvent: (e) => {
        if (e.type === 'log' && e.text.includes('started')) blockerStarted();
      },
    }).catch((e: unknown) => e);
    await running;

    const pending = new AbortController();
    const reasons: string[] = [];
    const second = await runRemote({
      host: sandbox().host,
      outputDir: await freshDir(),
      args: ['ok'],
      signal: pending.signal,
      onEvent: (e) => {
        if (e.type === 'queued') {
          reasons.push(e.reason);
          if (e.reason !== 'None') pending.abort();
        }
      },
    }).catch((e: unknown) => e);
    expect(second).toBeInstanceOf(CancelledError);
    const pendingResult = (second as CancelledError).result!;
    expect(pendingResult).toMatchObject({ state: 'cancelled', exitCode: undefined, log: '' });
    expect(pendingResult.scheduler?.state).toBe('CANCELLED');
    expect(reasons.some((r) => r === 'Resources' || r === 'Priority')).toBe(true);

    const t = performance.now();
    blocker.abort();
    const firstError = await first;
    expect(firstError).toBeInstanceOf(CancelledError);
    const firstResult = (firstError as CancelledError).result!;
    // The program got TERM from Slurm; the runner outlived it and recorded 143.
    expect(firstResult).toMatchObject({ state: 'cancelled', exitCode: 143, log: 'started\n' });
    expect(performance.now() - t).toBeLessThan(10_000);
  });

  it('cancel of a program that ignores TERM waits for Slurm to KILL it (KillWait) and answers cancelled; rm of a queued job is refused', async () => {
    const host = await resolveHost(sandbox().host);
    const connection = await connect(host);
    try {
      const gateway = new GatewayClient(connection);
      const jobId = crypto.randomUUID();
      await gateway.start(jobId, ['ignore', '60']);
      let status = await gateway.status(jobId);
      const rm = await gateway.remove(jobId).catch((e: unknown) => e);
      expect(rm).toMatchObject({ gatewayCode: 'E_STATE', message: expect.stringMatching(/is (queued|running); cancel it first/) });
      for (const deadline = Date.now() + 20_000; !(status.state === 'running' && status.logBytes > 0); status = await gateway.status(jobId)) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((r) => setTimeout(r, 200));
      }
      const t = performance.now();
      const cancelled = await gateway.cancel(jobId);
      // TERM is ignored; Slurm KILLs the job's processes one by one KillWait (2 s) later: no exit
      // status, or 137 when the program went a moment before its runner (both seen here).
      expect(cancelled.state).toBe('cancelled');
      expect([undefined, 137]).toContain(cancelled.exitCode);
      expect(performance.now() - t).toBeGreaterThan(1500);
      await gateway.remove(jobId);

      // A program that takes half a second to clean up on TERM gets it (the gateway waits up to
      // --grace before asking Slurm to KILL; Slurm's own KillWait is 2 s): its status is recorded.
      const slow = crypto.randomUUID();
      await gateway.start(slow, ['slowterm']);
      for (let s = await gateway.status(slow), deadline = Date.now() + 20_000; !(s.state === 'running' && s.logBytes > 0); s = await gateway.status(slow)) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(await gateway.cancel(slow)).toMatchObject({ state: 'cancelled', exitCode: 7 });
      await gateway.remove(slow);
    } finally {
      connection.close();
    }
  });

  it('a connection cut while queued costs nothing: the job is submitted once and runs once', async () => {
    const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: sandbox().port } });
    try {
      const blocker = new AbortController();
      let blockerStarted!: () => void;
      const running = new Promise<void>((r) => (blockerStarted = r));
      const first = runRemote({
        host: sandbox().host,
        outputDir: await freshDir(),
        args: ['sleep', '4'],
        resources: { cpus: 2 },
        signal: blocker.signal,
        onEvent: (e) => {
          if (e.type === 'log' && e.text.includes('started')) blockerStarted();
        },
      });
      await running;
      const before = submissions();
      let cut = false;
      const r = await runRemote({
        // The host key is pinned: the proxy's port is not the one in known_hosts.
        host: { ...sandbox().host, port: proxy.port, hostKeyFingerprint: sandbox().hostKeyFingerprint, retry: { retries: 5, minTimeoutMs: 100, maxTimeoutMs: 500 } },
        outputDir: await freshDir(),
        args: ['ok'],
        onEvent: (e) => {
          if (e.type === 'queued' && !cut) {
            cut = true;
            proxy.cutAll();
          }
        },
      });
      expect(cut).toBe(true);
      expect(r).toMatchObject({ state: 'exited', exitCode: 0 });
      expect(r.connections).toBeGreaterThanOrEqual(2);
      expect(r.log).toBe(okLog(r.scheduler!.id));
      expect(submissions() - before).toBe(1);
      expect((await first).exitCode).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  const STREAM_LOG = Array.from({ length: 20 }, (_, i) => `line ${i + 1}\n`).join('');
  /** The stream mode's output as downloaded, and the sha256 the program computed of it on the site. */
  const streamOutputs = async (out: string): Promise<{ here: string; there: string }> => ({
    here: await sha256(join(out, 'out.bin')),
    there: (await readFile(join(out, 'out.sha256'), 'utf8')).split(' ')[0]!,
  });

  it('a connection cut while the Slurm job runs: the job runs on, the client reconnects and gets the whole log, the exit status and the outputs, sha256-identical', async () => {
    const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: sandbox().port } });
    try {
      const before = submissions();
      let schedId = '';
      let stateAtCut = '';
      const out = await freshDir();
      const r = await runRemote({
        host: { ...sandbox().host, port: proxy.port, hostKeyFingerprint: sandbox().hostKeyFingerprint, retry: { retries: 5, minTimeoutMs: 100, maxTimeoutMs: 500 } },
        outputDir: out,
        args: ['stream'],
        onEvent: (e) => {
          if (e.type === 'queued') schedId = e.schedulerId;
          if (e.type === 'log' && e.text.includes('line 2\n') && stateAtCut === '') {
            expect(proxy.cutAll()).toBeGreaterThan(0);
            // The client's connection is gone; Slurm's job is not.
            stateAtCut = slurm().run('squeue', ['-h', `--jobs=${schedId}`, '-o', '%T']).trim();
          }
        },
      });
      expect(stateAtCut).toBe('RUNNING');
      expect(r).toMatchObject({ state: 'exited', exitCode: 4, failed: true, log: STREAM_LOG });
      expect(r.scheduler).toMatchObject({ id: schedId, state: 'FAILED' });
      expect(r.connections).toBeGreaterThanOrEqual(2);
      expect(proxy.stats().cuts).toBe(1);
      const { here, there } = await streamOutputs(out);
      expect(here).toMatch(/^[0-9a-f]{64}$/);
      expect(here).toBe(there);
      expect(submissions() - before).toBe(1);
    } finally {
      await proxy.close();
    }
  });

  it('the client goes away while its job is queued (its process KILLed): the job stays queued, and attach later follows it to the end with the whole log, exit status and outputs', async () => {
    // The CPUs are taken, so the CLI's job waits.
    const blocker = new AbortController();
    let blockerStarted!: () => void;
    const running = new Promise<void>((r) => (blockerStarted = r));
    const first = runRemote({
      host: sandbox().host,
      outputDir: await freshDir(),
      args: ['sleep', '60'],
      resources: { cpus: 2 },
      signal: blocker.signal,
      onEvent: (e) => {
        if (e.type === 'log' && e.text.includes('started')) blockerStarted();
      },
    }).catch((e: unknown) => e);
    await running;
    const before = submissions();
    const dir = await freshDir();
    const config = join(dir, 'hosts.yaml');
    await writeFile(config, sandbox().profileYaml());
    const jobId = crypto.randomUUID();
    const cli = spawn(process.execPath, [resolve('bin/mint-ssh-exec.mjs'), 'run', 'sandbox', '--config', config, '--job-id', jobId, '--arg', 'stream', '-o', join(dir, 'gone'), '--quiet'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let cliStderr = '';
    cli.stderr.on('data', (d: Buffer) => (cliStderr += d.toString()));
    const cliEnded = new Promise<NodeJS.Signals | null>((r) => cli.once('exit', (_code, signal) => r(signal)));
    const schedIdFile = join(sandbox().root, jobId, 'sched_id');
    const state = (id: string): string => slurm().run('squeue', ['-h', `--jobs=${id}`, '-o', '%T']).trim();
    let schedId = '';
    for (const deadline = Date.now() + 30_000; schedId === '' || state(schedId) !== 'PENDING'; ) {
      expect(Date.now(), cliStderr).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 100));
      if (schedId === '' && existsSync(schedIdFile)) schedId = readFileSync(schedIdFile, 'utf8').trim();
    }
    cli.kill('SIGKILL');
    expect(await cliEnded).toBe('SIGKILL');
    // Nobody cancelled it: a second later it still waits for the CPUs.
    await new Promise((r) => setTimeout(r, 1000));
    expect(state(schedId)).toBe('PENDING');

    const events: JobEvent[] = [];
    const out = await freshDir();
    const r = await attach({
      host: sandbox().host,
      jobId,
      outputDir: out,
      onEvent: (e) => {
        events.push(e);
        // Picked up while still queued; then the CPUs free up.
        if (e.type === 'queued' && !blocker.signal.aborted) blocker.abort();
      },
    });
    const types = events.map((e) => e.type);
    expect(types.indexOf('queued')).toBeGreaterThanOrEqual(0);
    expect(types.indexOf('queued')).toBeLessThan(types.indexOf('started'));
    expect(r).toMatchObject({ jobId, state: 'exited', exitCode: 4, log: STREAM_LOG });
    expect(r.scheduler).toMatchObject({ id: schedId, state: 'FAILED' });
    const { here, there } = await streamOutputs(out);
    expect(here).toBe(there);
    expect(submissions() - before).toBe(1);
    expect(await first).toBeInstanceOf(CancelledError);
  });

  it('a retried start, and two starts at once from two connections, find the recorded Slurm id: one submission, one run', async () => {
    const host = await resolveHost(sandbox().host);
    const [one, two] = await Promise.all([connect(host), connect(host)]);
    const jobId = crypto.randomUUID();
    const before = submissions();
    try {
      const [a, b] = await Promise.all([new GatewayClient(one).start(jobId, ['ok']), new GatewayClient(two).start(jobId, ['ok'])]);
      const id = a.scheduler?.id ?? '';
      expect(id).toMatch(/^\d+$/);
      expect(b.scheduler?.id).toBe(id);
      // A start whose reply was lost is sent again: the same job, not a second one.
      const again = await new GatewayClient(one).start(jobId, ['ok']);
      expect(again.scheduler?.id).toBe(id);
      const r = await attach({ host: sandbox().host, jobId, outputDir: await freshDir(), cleanup: 'always' });
      expect(r).toMatchObject({ state: 'exited', exitCode: 0, log: okLog(id) });
      expect(submissions() - before).toBe(1);
    } finally {
      one.close();
      two.close();
    }
  });

  it("an operator's scancel (no cancel marker): the runner records the program's 143, so the job is exited and failed, and result.scheduler says CANCELLED", async () => {
    let schedId = '';
    const r = await runRemote({
      host: sandbox().host,
      outputDir: await freshDir(),
      args: ['sleep', '60'],
      onEvent: (e) => {
        if (e.type === 'queued') schedId = e.schedulerId;
        // As root, as an operator would: not through the gateway, so no cancel marker.
        if (e.type === 'log' && e.text.includes('started')) slurm().run('scancel', [schedId]);
      },
    });
    // Not the client's cancel (no CancelledError), not lost: the program ended on Slurm's TERM.
    expect(r).toMatchObject({ state: 'exited', exitCode: 143, failed: true, cancelled: false, log: 'started\n' });
    expect(r.scheduler).toMatchObject({ id: schedId, state: 'CANCELLED' });
  });

  it('attach picks up a job the scheduler has since forgotten (MinJobAge): the exit file answers', async () => {
    const host = await resolveHost(sandbox().host);
    const connection = await connect(host);
    const jobId = crypto.randomUUID();
    let schedId = '';
    try {
      const started = await new GatewayClient(connection).start(jobId, ['exit3']);
      expect(started.state).toBe('queued');
      schedId = started.scheduler!.id;
    } finally {
      connection.close();
    }
    // Nobody asks while it runs and ends; MinJobAge=2 lets Slurm purge it a few seconds later.
    const deadline = Date.now() + 30_000;
    while (slurm().run('squeue', ['-h', '-t', 'all', `--jobs=${schedId},${schedId}`, '-o', '%T']).trim() !== '') {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 250));
    }
    const r = await attach({ host: sandbox().host, jobId, outputDir: await freshDir(), cleanup: 'always' });
    expect(r).toMatchObject({ state: 'exited', exitCode: 3, log: 'failing\n' });
    expect(r.scheduler).toMatchObject({ id: schedId, state: 'GONE' });
  });

  it('probe shows the scheduler\'s facts: Slurm\'s version, the partition\'s idle/total nodes, this account\'s queue, the site maxima (text and --json)', async () => {
    const dir = await freshDir();
    const config = join(dir, 'hosts.yaml');
    await writeFile(config, sandbox().profileYaml());
    const version = slurm().run('sinfo', ['--version']).trim();
    const json = await runMain(main, ['probe', 'sandbox', '--json', '--config', config]);
    expect(json.code, json.stderr).toBe(0);
    const [host] = (JSON.parse(json.stdout) as { hosts: Array<{ scheduler: unknown }> }).hosts;
    expect(host!.scheduler).toEqual({
      type: 'slurm',
      version,
      queues: [{ name: 'debug', idle: expect.any(Number), total: 1 }],
      reachable: true,
      jobs: { queued: 0, running: 0 },
      maxima: { cpus: 2, memoryMb: 1000, walltimeMin: 30 },
    });
    // A job held in the queue counts for this account (the one the key logs into); root's does not.
    const held = slurm().run('sbatch', ['--parsable', '--hold', '--chdir=/tmp', '--output=/dev/null', '--wrap=true'], siteAccount()).trim();
    const rootsHeld = slurm().run('sbatch', ['--parsable', '--hold', '--chdir=/tmp', '--output=/dev/null', '--wrap=true']).trim();
    try {
      // The queue as the shared poll saw it at most 2 s ago (one squeue per root per 2 s).
      await new Promise((r) => setTimeout(r, 2100));
      const text = await runMain(main, ['probe', 'sandbox', '--config', config]);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toMatch(new RegExp(`jobs go to slurm \\(${version.replace('.', '\\.')}\\); debug [01]/1 nodes idle; this account 1 queued, 0 running; a job at most 2 CPUs, 1000 MB, 30 min`));
    } finally {
      slurm().run('scancel', [held, rootsHeld]);
    }
  });

  it('resources over a site maximum are refused (E_LIMIT), never clamped, and nothing is submitted', async () => {
    const before = submissions();
    for (const resources of [{ cpus: 3 }, { memoryMb: 1001 }, { walltimeMinutes: 31 }]) {
      const error = await runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['ok'], resources, waitForSlot: true }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(GatewayError);
      expect(error).toMatchObject({ gatewayCode: 'E_LIMIT', message: expect.stringMatching(/over the site maximum/) });
    }
    expect(submissions()).toBe(before);
  });
});
