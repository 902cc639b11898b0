/**
 * A `--scheduler sge` gateway against a real private Grid Engine cell (test/support/sge.ts),
 * through the real sshd, the real gateway and rsync: the program runs as a Grid Engine job (its
 * JOB_ID is the one the result names), its exit status comes from the runner's exit file (qacct
 * lags the accounting flush), and cancel ends a running job (qdel: a KILL, no TERM) and a pending
 * one, and a connection cut while it runs loses nothing. The cell has one slot, so a second job
 * waits. MInt's key logs into the unprivileged site account (test/support/site-account.ts):
 * sge_execd runs the jobs with its uid, under the cell's default min_uid 1000. Skipped only where
 * not root, with the reason printed.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runRemote, type JobEvent } from '../../src/index.js';
import { CancelledError, GatewayError } from '../../src/errors.js';
import { main } from '../../src/cli/mint-ssh-exec.js';
import { runMain } from '../support/cli-io.js';
import { freshDir, sha256 } from '../support/fixture.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { siteAccount, useSiteSandbox } from '../support/site-account.js';
import { sgeUnavailable, useSge } from '../support/sge.js';

const why = sgeUnavailable();
if (why) process.stdout.write(`[cluster tests] skipped: ${why}\n`);

const PROGRAM = `#!/bin/sh
case $1 in
  ok) echo "sge job \${JOB_ID:-none} in \${QUEUE:-none} with \${NSLOTS:-none} slot as \$(id -un) uid \$(id -u)"; echo done > out.txt; exit 0 ;;
  exit3) echo failing; exit 3 ;;
  # Twenty lines over about 4 s, then 3 MB of random bytes and their sha256 as the site saw them.
  stream) i=1; while [ "$i" -le 20 ]; do echo "line $i"; i=$((i + 1)); sleep 0.2; done
    head -c 3000000 /dev/urandom > out.bin; sha256sum out.bin > out.sha256; exit 4 ;;
  sleep) trap 'echo got TERM; exit 7' TERM; echo started; sleep "$2" & wait ;;
esac
`;

describe.skipIf(why !== undefined)('a --scheduler sge gateway on a private Grid Engine cell', () => {
  const sge = useSge({ slots: 1 });
  // MInt's key logs into an unprivileged account, as on a site: the scheduler runs its jobs as it.
  const sandbox = useSiteSandbox({ program: '/bin/true' });
  beforeAll(async () => {
    const env = Object.entries(sge().env).map(([k, v]) => `${k}=${v}`);
    await sandbox().reinstall({ scheduler: 'sge', env, maxWalltimeMin: 30, grace: 3 });
    await writeFile(sandbox().program, PROGRAM);
  }, 60_000);

  it('runs the program as a Grid Engine job: queued, then started, its log, outputs and exit status', async () => {
    const events: JobEvent[] = [];
    const out = await freshDir();
    const t0 = performance.now();
    const r = await runRemote({ host: sandbox().host, outputDir: out, args: ['ok'], onEvent: (e) => events.push(e) });
    const ms = performance.now() - t0;
    expect(r).toMatchObject({ state: 'exited', exitCode: 0, failed: false, cleanedUp: true });
    expect(r.scheduler?.id).toMatch(/^\d+$/);
    // The program ran as the site's unprivileged account, not as root (sge_execd setuid to it).
    expect(siteAccount().uid).not.toBe(0);
    expect(r.log).toBe(`sge job ${r.scheduler!.id} in all.q with 1 slot as ${siteAccount().name} uid ${siteAccount().uid}\n`);
    expect(await readFile(join(out, 'out.txt'), 'utf8')).toBe('done\n');
    const types = events.map((e) => e.type);
    expect(types.indexOf('queued')).toBeGreaterThanOrEqual(0);
    expect(types.indexOf('queued')).toBeLessThan(types.indexOf('started'));
    expect(types.indexOf('started')).toBeLessThan(types.indexOf('exited'));
    process.stdout.write(`[cluster] runRemote through sge, end to end: ${ms.toFixed(0)} ms\n`);
  });

  it('exit status 3 comes from the exit file', async () => {
    const r = await runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['exit3'] });
    expect(r).toMatchObject({ state: 'exited', exitCode: 3, failed: true, log: 'failing\n' });
  });

  it('cancels a pending job (it never runs) and a running one (qdel KILLs: no exit status)', async () => {
    const blocker = new AbortController();
    let blockerStarted!: () => void;
    const running = new Promise<void>((r) => (blockerStarted = r));
    const first = runRemote({
      host: sandbox().host,
      outputDir: await freshDir(),
      args: ['sleep', '60'],
      signal: blocker.signal,
      onEvent: (e) => {
        if (e.type === 'log' && e.text.includes('started')) blockerStarted();
      },
    }).catch((e: unknown) => e);
    await running;

    // One slot, taken: the second job waits (qw) until it is cancelled.
    const pending = new AbortController();
    const queued: string[] = [];
    const second = await runRemote({
      host: sandbox().host,
      outputDir: await freshDir(),
      args: ['ok'],
      signal: pending.signal,
      onEvent: (e) => {
        if (e.type === 'queued') {
          queued.push(e.schedulerId);
          setTimeout(() => pending.abort(), 2500);
        }
        if (e.type === 'started') throw new Error('the pending job started');
      },
    }).catch((e: unknown) => e);
    expect(second).toBeInstanceOf(CancelledError);
    expect((second as CancelledError).result).toMatchObject({ state: 'cancelled', exitCode: undefined, log: '' });
    expect(queued.length).toBeGreaterThan(0);

    const t = performance.now();
    blocker.abort();
    const firstError = await first;
    expect(firstError).toBeInstanceOf(CancelledError);
    // qdel is a SIGKILL for the job's every process, the runner's too: no TERM trap ran, no exit file.
    expect((firstError as CancelledError).result).toMatchObject({ state: 'cancelled', exitCode: undefined, log: 'started\n' });
    expect(performance.now() - t).toBeLessThan(10_000);
  });

  it('a connection cut while the Grid Engine job runs: the job runs on, the client reconnects and gets the whole log, the exit status and the outputs, sha256-identical', async () => {
    const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: sandbox().port } });
    try {
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
            // The client's connection is gone; the job is not (qstat's state column: r).
            const line = sge().run('qstat', ['-u', '*']).split('\n').find((l) => l.trim().startsWith(`${schedId} `));
            stateAtCut = line?.trim().split(/\s+/)[4] ?? 'absent';
          }
        },
      });
      expect(stateAtCut).toBe('r');
      expect(r).toMatchObject({ state: 'exited', exitCode: 4, failed: true, log: Array.from({ length: 20 }, (_, i) => `line ${i + 1}\n`).join('') });
      expect(r.scheduler?.id).toBe(schedId);
      expect(r.connections).toBeGreaterThanOrEqual(2);
      expect(proxy.stats().cuts).toBe(1);
      const here = await sha256(join(out, 'out.bin'));
      expect(here).toMatch(/^[0-9a-f]{64}$/);
      expect(here).toBe((await readFile(join(out, 'out.sha256'), 'utf8')).split(' ')[0]);
    } finally {
      await proxy.close();
    }
  });

  it('probe shows the scheduler\'s facts: Grid Engine\'s version, the queue\'s free/total slots, this account\'s queue, the maxima', async () => {
    const dir = await freshDir();
    const config = join(dir, 'hosts.yaml');
    await writeFile(config, sandbox().profileYaml());
    // The job the cancel case qdel'ed may linger in qstat a moment; then the shared poll (one
    // query per root per 2 s) must have looked again.
    for (const deadline = Date.now() + 15_000; sge().run('qstat', ['-u', '*']).trim() !== ''; ) {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 2100));
    const json = await runMain(main, ['probe', 'sandbox', '--json', '--config', config]);
    expect(json.code, json.stderr).toBe(0);
    const [host] = (JSON.parse(json.stdout) as { hosts: Array<{ scheduler: unknown }> }).hosts;
    expect(host!.scheduler).toEqual({
      type: 'sge',
      version: 'SGE 8.1.9',
      queues: [{ name: 'all.q', idle: 1, total: 1 }],
      reachable: true,
      jobs: { queued: 0, running: 0 },
      maxima: { walltimeMin: 30 },
    });
    // A job held in the queue counts for this account (the one the key logs into).
    const held = sge().run('qsub', ['-h', '-terse', '-o', '/dev/null', '-j', 'y', '-b', 'y', '/bin/true'], siteAccount()).trim();
    try {
      await new Promise((r) => setTimeout(r, 2100));
      const text = await runMain(main, ['probe', 'sandbox', '--config', config]);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toContain('jobs go to sge (SGE 8.1.9); all.q 1/1 slots free; this account 1 queued, 0 running; a job at most 30 min');
    } finally {
      sge().run('qdel', [held]);
    }
  });

  it('the cell keeps Grid Engine\'s default min_uid 1000: a job of root\'s is refused, so the jobs that ran above were the site account\'s', () => {
    expect(() => sge().run('qsub', ['-h', '-terse', '-o', '/dev/null', '-j', 'y', '-b', 'y', '/bin/true'])).toThrow(/your user id 0 is lower than minimum user id 1000/);
    expect(siteAccount().uid).toBeGreaterThanOrEqual(1000);
  });

  it('more than one CPU is refused (a parallel environment is the site\'s to name); walltime over the maximum is E_LIMIT', async () => {
    const cpus = await runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['ok'], resources: { cpus: 2 } }).catch((e: unknown) => e);
    expect(cpus).toBeInstanceOf(GatewayError);
    expect(cpus).toMatchObject({ gatewayCode: 'E_USAGE', message: expect.stringMatching(/parallel environment/) });
    const wall = await runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['ok'], resources: { walltimeMinutes: 31 } }).catch((e: unknown) => e);
    expect(wall).toMatchObject({ gatewayCode: 'E_LIMIT' });
    // Within it: the job gets h_rt and runs.
    const ok = await runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['ok'], resources: { walltimeMinutes: 5, memoryMb: 500 } });
    expect(ok).toMatchObject({ state: 'exited', exitCode: 0 });
  });
});
