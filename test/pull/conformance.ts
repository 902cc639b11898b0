/**
 * The job-level conformance suite (issue 18): the same cases, through the public API only
 * (runRemote, attach, listJobs, cancelJob, removeJob), against the SSH method (a real sshd and the
 * gateway, startSandbox) and the pull method (a real hub process and a real agent process running
 * the same gateway script). conformance-{ssh,pull}.test.ts (jobs), conformance-{ssh,pull}-cuts.test.ts
 * (cut links) and conformance-pull-restarts.test.ts each run one part for one mode, side by side.
 *
 * Both sites have the same program, the same export allow-list and the same per-job size limit; a
 * TCP proxy between the client and the site (sshd, or the hub) cuts the client's link on command.
 * Every outcome is compared with what it must be byte for byte (the expected output tree is computed
 * here, not taken from either mode), so the two modes are held to one answer, not to each other's.
 */
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { attach, cancelJob, CancelledError, GatewayError, listJobs, removeJob, runRemote, type JobEvent, type RemoteResult } from '../../src/index.js';
import type { InlineHost } from '../../src/config/resolve-host.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/sandbox.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { freshDir, sha256 } from '../support/fixture.js';
import { startAgent, startHub, type HubSetup, type Proc } from '../support/pull.js';

export type Mode = 'ssh' | 'pull';

const RETRY = { retries: 30, minTimeoutMs: 100, maxTimeoutMs: 1000, maxRetryTimeMs: 90_000 };
/** Results that may leave the site; secret.key, which every run writes, may not. */
const EXPORT = '*.txt,*.bin,*.log';
/**
 * Per-job size cap. Over twice the 4 MiB input: a resumed rsync upload holds the partial copy
 * beside the new temporary file, and the gateway counts both (a cut at 70% under a 6 MB cap was
 * refused E_LIMIT in SSH mode).
 */
const MAX_JOB_MB = 12;
/** Programs at once on each site: a third concurrent job is refused at its start. */
const MAX_JOBS = 2;
const INPUT_SIZE = 4 * 1024 * 1024;
const SEQ = 600_000;

/** A deterministic input (so the expected outputs are known here): SHA-256 in counter mode. */
function inputBytes(): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; blocks.length * 32 < INPUT_SIZE; i += 1) blocks.push(createHash('sha256').update(`conformance ${i}`).digest());
  return Buffer.concat(blocks).subarray(0, INPUT_SIZE);
}

const hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const numbers = Array.from({ length: SEQ }, (_, i) => `${i + 1}\n`).join('');

/**
 * The site's program. STATE (outside the job) counts its runs and keeps its pid and its child's.
 *   exit N        writes result.txt, exits N
 *   upload        hashes upload.bin into input-hashes.txt
 *   hold N        prints N lines 50 ms apart, then waits (30 s at most) for STATE/release-JOB
 *   download      writes numbers.txt (seq 1 600000, 3.9 MB)
 *   spin          a child `sleep 60` in its process group, waited for
 *   bigout MB     MB random bytes in big.bin, their sha256sum line in big-sha.txt
 * Every run also writes secret.key, which the export allow-list must keep on the site.
 */
function programText(state: string): string {
  return `#!/bin/sh
set -u
STATE=${state}
echo x >> "$STATE/runs-$MINT_JOB_ID"
echo $$ > "$STATE/pid-$MINT_JOB_ID"
echo "do not export" > secret.key
case $1 in
  exit) echo "exit $2"; echo done > result.txt; exit "$2" ;;
  upload) sha256sum upload.bin > input-hashes.txt; echo hashed ;;
  hold)
    i=1
    while [ $i -le "$2" ]; do echo "line $i"; sleep 0.05; i=$((i + 1)); done
    n=0
    while [ ! -e "$STATE/release-$MINT_JOB_ID" ]; do
      sleep 0.05; n=$((n + 1))
      if [ $n -ge 600 ]; then echo "never released"; exit 3; fi
    done
    echo released; echo done > result.txt ;;
  download) seq 1 ${SEQ} > numbers.txt; echo "wrote numbers" ;;
  spin) sleep 60 & echo $! > "$STATE/child-$MINT_JOB_ID"; echo spinning; wait ;;
  bigout) head -c $(($2 * 1048576)) /dev/urandom > big.bin; sha256sum big.bin > big-sha.txt; echo "wrote big" ;;
esac
exit 0
`;
}

interface Site {
  /** The site as the client reaches it: through the proxy. */
  host: () => InlineHost;
  /** The gateway's job root on the site (where a job's dir lives while it is there). */
  root: string;
  /** The link from the client to the site (sshd or the hub); replaced by a fresh one per cut. */
  proxy: FaultProxy;
  target: number;
  stop: () => Promise<void>;
  hub?: HubSetup;
  agent?: Proc;
  startAgent?: () => Promise<Proc>;
  /** Pull: the agent's own link to the hub. */
  agentProxy?: FaultProxy;
}

async function hashTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      if (d === dir && entry.name === '.mint-job.json') continue;
      const path = join(d, entry.name);
      if (entry.isDirectory()) {
        out[`${relative(dir, path)}/`] = 'dir';
        await walk(path);
      } else out[relative(dir, path)] = await sha256(path);
    }
  };
  await walk(dir);
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The suite in three parts, each run by its own file so that each stays under a minute here:
 * `jobs` and `cuts`, which both methods must pass alike (plus, for pull, the agent's own link cut),
 * and `restarts`, the pull method's own (the hub and the agent restarted mid-job).
 */
export type Part = 'jobs' | 'cuts' | 'restarts';

export function conformance(mode: Mode, part: Part): void {
  describe(`job conformance: ${mode} mode, ${part}`, () => {
    // Cases of another part are not registered at all (never shown as skipped).
    const shared = (name: string, fn: () => Promise<void>): void => {
      if (part === 'jobs') it(name, fn);
    };
    const cutCase = (name: string, fn: () => Promise<void>): void => {
      if (part === 'cuts') it(name, fn);
    };
    let work: string;
    let state: string;
    let input: string;
    let site: Site;
    const scratch: string[] = [];
    const out = async (): Promise<string> => {
      const dir = await freshDir();
      scratch.push(dir);
      return join(dir, 'out');
    };

    beforeAll(async () => {
      work = await freshDir();
      state = join(work, 'state');
      await mkdir(state);
      input = join(work, 'upload.bin');
      await writeFile(input, inputBytes());
      const program = join(work, 'program.sh');
      await writeFile(program, programText(state));
      await chmod(program, 0o755);
      if (mode === 'ssh') {
        const sandbox: Sandbox = await startSandbox({ program, gateway: { export: EXPORT, maxJobMb: MAX_JOB_MB, maxJobs: MAX_JOBS } });
        const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: sandbox.port } });
        site = {
          root: sandbox.root,
          proxy,
          target: sandbox.port,
          host: () => ({ ...sandbox.host, port: site.proxy.port, hostKeyFingerprint: sandbox.hostKeyFingerprint, retry: RETRY }),
          stop: () => sandbox.stop(),
        };
      } else {
        const hub = await startHub(work);
        const token = hub.siteToken('conf');
        const extra = ['--export', EXPORT, '--max-job-mb', String(MAX_JOB_MB), '--max-jobs', String(MAX_JOBS)];
        // The agent reaches the hub through a proxy of its own, which the restart cases cut.
        const agentProxy = await startFaultProxy({ target: { host: '127.0.0.1', port: hub.port }, lifetimeMs: 30 * 60_000 });
        const viaProxy: HubSetup = { ...hub, url: `https://127.0.0.1:${agentProxy.port}` };
        const first = await startAgent(work, viaProxy, 'conf', token, extra, programText(state));
        const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: hub.port } });
        site = {
          root: first.root,
          proxy,
          agentProxy,
          target: hub.port,
          hub,
          agent: first,
          startAgent: async () => (site.agent = await startAgent(work, viaProxy, 'conf', token, extra, programText(state))),
          host: () => ({ ...hub.host('conf'), hub: `https://127.0.0.1:${site.proxy.port}`, retry: RETRY }),
          stop: async () => {
            await site.agent?.stop();
            await hub.proc.stop();
          },
        };
      }
    }, 120_000);

    afterAll(async () => {
      await site?.proxy.close();
      await site?.stop();
      await site?.agentProxy?.close();
      if (work) await rm(work, { recursive: true, force: true });
    });

    afterEach(async () => {
      for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
    });

    /** A fresh proxy (a trigger left armed cannot leak into the next test). */
    async function freshProxy(): Promise<void> {
      await site.proxy.close();
      site.proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: site.target } });
    }

    interface Run {
      result: RemoteResult;
      events: JobEvent[];
      dir: string;
      jobId: string;
    }

    /** Runs the job to its end through a fresh proxy. */
    async function run(args: string[], inputs: string[], onEvent?: (e: JobEvent, jobId: string) => void, jobId = randomUUID(), signal?: AbortSignal, arm?: () => void): Promise<Run> {
      await freshProxy();
      arm?.();
      const dir = await out();
      const events: JobEvent[] = [];
      const result = await runRemote({ host: site.host(), jobId, inputs, args, outputDir: dir, ...(signal ? { signal } : {}), onEvent: (e) => (events.push(e), onEvent?.(e, jobId)) });
      return { result, events, dir, jobId };
    }

    const runs = (jobId: string): string => {
      try {
        return readFileSync(join(state, `runs-${jobId}`), 'utf8');
      } catch {
        return '';
      }
    };

    /** Gone from the site: its dir under the root (the agent removes it once the hub has acknowledged the results). */
    const leftSite = (jobId: string): Promise<void> => until(`job ${jobId} to leave the site`, () => !existsSync(join(site.root, jobId)), 10_000);

    const expectedTrees = {
      exit: (log: string) => ({ 'remote_program_exec.log': hex(log), 'result.txt': hex('done\n') }),
      upload: () => {
        const data = inputBytes();
        return { 'input-hashes.txt': hex(`${hex(data)}  upload.bin\n`), 'remote_program_exec.log': hex('hashed\n'), 'upload.bin': hex(data) };
      },
      download: () => ({ 'numbers.txt': hex(numbers), 'remote_program_exec.log': hex('wrote numbers\n') }),
      hold: (n: number) => ({ 'remote_program_exec.log': hex(holdLog(n)), 'result.txt': hex('done\n') }),
    };
    const holdLog = (n: number): string => `${Array.from({ length: n }, (_, i) => `line ${i + 1}\n`).join('')}released\n`;

    shared('success and failure: the exit status comes back, the export allow-list holds, a failed job stays until removed', async () => {
      const ok = await run(['exit', '0'], []);
      expect(ok.result).toMatchObject({ exitCode: 0, state: 'exited', failed: false, cleanedUp: true, log: 'exit 0\n' });
      expect(await hashTree(ok.dir)).toEqual(expectedTrees.exit('exit 0\n'));
      expect(runs(ok.jobId)).toBe('x\n');
      await leftSite(ok.jobId);

      const bad = await run(['exit', '7'], []);
      expect(bad.result).toMatchObject({ exitCode: 7, state: 'exited', failed: true, cleanedUp: false, log: 'exit 7\n' });
      // secret.key was written on the site and never left it.
      expect(await hashTree(bad.dir)).toEqual(expectedTrees.exit('exit 7\n'));
      expect(existsSync(join(bad.dir, 'secret.key'))).toBe(false);
      const listed = await listJobs(site.host());
      expect(listed.find((j) => j.jobId === bad.jobId)).toMatchObject({ state: 'exited', exitCode: 7 });
      expect(listed.find((j) => j.jobId === ok.jobId)).toBeUndefined();
      expect(await removeJob(site.host(), bad.jobId)).toMatchObject({ state: 'exited', exitCode: 7 });
      expect((await listJobs(site.host())).find((j) => j.jobId === bad.jobId)).toBeUndefined();
      await leftSite(bad.jobId);
    });

    /** The program's pid and its child's, once both are written. */
    async function pids(jobId: string): Promise<number[]> {
      await until('the program and its child', () => existsSync(join(state, `child-${jobId}`)) && existsSync(join(state, `pid-${jobId}`)));
      return ['pid', 'child'].map((k) => Number(readFileSync(join(state, `${k}-${jobId}`), 'utf8').trim()));
    }

    shared('cancel through the signal: CancelledError with the log, the whole process group ends, the program ran once', async () => {
      const controller = new AbortController();
      const jobId = randomUUID();
      const error = await run(['spin'], [], (e) => {
        if (e.type === 'log' && e.text.includes('spinning')) controller.abort();
      }, jobId, controller.signal).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(CancelledError);
      expect((error as CancelledError).result).toMatchObject({ state: 'cancelled', jobId });
      expect((error as CancelledError).result!.log).toContain('spinning');
      const [pid, child] = await pids(jobId);
      await until('the program and its child to end', () => !alive(pid!) && !alive(child!), 15_000);
      expect(runs(jobId)).toBe('x\n');
    });

    shared('cancel from elsewhere (cancelJob): the running job ends cancelled, the whole process group ends', async () => {
      const jobId = randomUUID();
      let asked: Promise<unknown> | undefined;
      const done = await run(['spin'], [], (e) => {
        if (!asked && e.type === 'log' && e.text.includes('spinning')) asked = cancelJob(site.host(), jobId);
      }, jobId).then(
        (r) => r.result,
        (e: unknown) => e,
      );
      expect(await asked).toMatchObject({ jobId, state: 'cancelled' });
      expect(done).toMatchObject({ state: 'cancelled', failed: true });
      const [pid, child] = await pids(jobId);
      await until('the program and its child to end', () => !alive(pid!) && !alive(child!), 15_000);
      expect(runs(jobId)).toBe('x\n');
    });

    async function expectIntact(r: Run, tree: Record<string, string>, log: string): Promise<void> {
      const retries = r.events.filter((e) => e.type === 'retrying').map((e) => (e.type === 'retrying' ? `${e.step}: ${e.error.message.split('\n')[0]}` : ''));
      const where = `job ${r.jobId} (connections ${r.result.connections}; retries: ${retries.join(' / ') || 'none'})`;
      expect(r.result, where).toMatchObject({ exitCode: 0, state: 'exited', failed: false, cleanedUp: true });
      expect(r.result.log, where).toBe(log);
      expect(await hashTree(r.dir), where).toEqual(tree);
      expect(runs(r.jobId), `${where}: runs`).toBe('x\n');
      await leftSite(r.jobId);
    }

    for (const share of [0.3, 0.7]) {
      cutCase(`a cut after ${share * 100}% of the upload: resumes, runs once, outputs sha256-identical`, async () => {
        // Armed before the job begins: the count includes the handshakes (a few KB), the rest is the input's.
        const r = await run(['upload'], [input], undefined, randomUUID(), undefined, () => site.proxy.cutAfterUpstreamBytes(Math.round(INPUT_SIZE * share)));
        expect(site.proxy.stats().cuts).toBeGreaterThan(0);
        expect(r.result.connections).toBeGreaterThan(1);
        await expectIntact(r, expectedTrees.upload(), 'hashed\n');
      });
    }

    cutCase('a cut while the program runs: the log resumes at its offset, nothing lost or doubled, runs once', async () => {
      let cut = false;
      let text = '';
      const r = await run(['hold', '10'], [], (e, jobId) => {
        if (e.type === 'log') text += e.text;
        if (!cut && text.includes('line 5\n')) {
          cut = true;
          site.proxy.cutAll();
          void writeFile(join(state, `release-${jobId}`), '');
        }
      });
      expect(cut).toBe(true);
      expect(r.result.connections).toBeGreaterThan(1);
      await expectIntact(r, expectedTrees.hold(10), holdLog(10));
    });

    for (const share of [0.3, 0.7]) {
      cutCase(`a cut after ${share * 100}% of the download: resumes, outputs sha256-identical`, async () => {
        const r = await run(['download'], [], (e) => {
          if (e.type === 'exited') site.proxy.cutAfterDownstreamBytes(Math.round(numbers.length * share));
        });
        expect(site.proxy.stats().cuts).toBeGreaterThan(0);
        expect(r.result.connections).toBeGreaterThan(1);
        await expectIntact(r, expectedTrees.download(), 'wrote numbers\n');
      });
    }

    shared('the MInt side crashes mid-job (its process killed); a new process attaches by job id and gets the whole result', async () => {
      await freshProxy();
      const jobId = randomUUID();
      const first = await out();
      const script = join(work, `client-${jobId}.mjs`);
      const bundle = resolve(import.meta.dirname, '..', '..', 'dist', 'bundle', 'index.mjs');
      await writeFile(
        script,
        `import { runRemote } from ${JSON.stringify(bundle)};
await runRemote({ host: JSON.parse(process.env.HOST), jobId: process.env.JOB, args: ['hold', '5'], outputDir: process.env.OUT,
  onEvent: (e) => { if (e.type === 'log' && e.text.includes('line 3')) process.stdout.write('seen\\n'); } });
process.stdout.write('finished\\n');
`,
      );
      const child = spawn(process.execPath, [script], { env: { ...process.env, HOST: JSON.stringify(site.host()), JOB: jobId, OUT: first }, stdio: ['ignore', 'pipe', 'pipe'] });
      let said = '';
      child.stdout.on('data', (c: Buffer) => (said += c.toString()));
      child.stderr.on('data', (c: Buffer) => (said += c.toString()));
      await until('the client to see the program run', () => said.includes('seen') || child.exitCode !== null, 30_000);
      expect(said).toContain('seen');
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      await writeFile(join(state, `release-${jobId}`), '');
      const dir = await out();
      const result = await attach({ host: site.host(), jobId, outputDir: dir });
      expect(said).not.toContain('finished');
      expect(result).toMatchObject({ jobId, exitCode: 0, state: 'exited', cleanedUp: true });
      expect(result.log).toBe(holdLog(5));
      expect(await hashTree(dir)).toEqual(expectedTrees.hold(5));
      expect(runs(jobId)).toBe('x\n');
      await leftSite(jobId);
    });

    if (mode === 'pull' && part === 'cuts') {
      it("the agent's own link to the hub is cut while it sends the log and again while it sends the results: it resumes both, nothing lost or doubled", async () => {
        const agentProxy = site.agentProxy!;
        const cutsBefore = agentProxy.stats().cuts;
        let text = '';
        let cutLog = false;
        let armed = false;
        const r = await run(['hold', '8'], [], (e, jobId) => {
          if (e.type === 'log') text += e.text;
          if (!cutLog && text.includes('line 3\n')) {
            cutLog = true;
            agentProxy.cutAll();
            void writeFile(join(state, `release-${jobId}`), '');
          }
        });
        expect(r.result.log).toBe(holdLog(8));
        expect(agentProxy.stats().cuts).toBeGreaterThan(cutsBefore);
        await expectIntact(r, expectedTrees.hold(8), holdLog(8));
        // The results: 48 MiB up from the agent, cut after 20 MiB of them.
        const big = await run(['bigout', '48'], [], (e) => {
          if (!armed && e.type === 'exited') {
            armed = true;
            agentProxy.cutAfterUpstreamBytes(20 * 1024 * 1024);
          }
        });
        expect(agentProxy.stats().cuts).toBeGreaterThan(cutsBefore + 1);
        expect(big.result).toMatchObject({ exitCode: 0, state: 'exited', cleanedUp: true, log: 'wrote big\n' });
        expect(await readFile(join(big.dir, 'big-sha.txt'), 'utf8')).toBe(`${await sha256(join(big.dir, 'big.bin'))}  big.bin\n`);
        expect(runs(big.jobId)).toBe('x\n');
        await leftSite(big.jobId);
      });
    }

    if (mode === 'pull' && part === 'restarts') {
      it('the hub restarts mid-job: nothing lost, the program runs once', async () => {
        let stopped: Promise<void> | undefined;
        let text = '';
        const r = await run(['hold', '8'], [input], (e, jobId) => {
          if (e.type === 'log') text += e.text;
          if (!stopped && text.includes('line 4\n')) {
            stopped = (async () => {
              await site.hub!.proc.stop();
              await new Promise((res) => setTimeout(res, 2000));
              await site.hub!.restart();
              await writeFile(join(state, `release-${jobId}`), '');
            })();
          }
        });
        await stopped;
        expect(r.result.connections).toBeGreaterThan(1);
        await expectIntact(r, { ...expectedTrees.hold(8), 'upload.bin': hex(inputBytes()) }, holdLog(8));
      });

      it('the agent is killed as the program ends (while it fetches and sends the results): a new agent delivers them whole, once', async () => {
        let killed: Promise<void> | undefined;
        const old = site.agent!;
        const r = await run(['bigout', '48'], [], (e) => {
          if (!killed && e.type === 'exited') {
            killed = (async () => {
              old.child.kill('SIGKILL');
              await old.stop();
              await site.startAgent!();
            })();
          }
        });
        await killed;
        // The kill came after the program's end (the client heard it from the hub) and before the
        // old agent had delivered the results.
        expect(old.stderr()).toContain(`job ${r.jobId}: started`);
        expect(old.stderr()).not.toContain(`job ${r.jobId}: results delivered`);
        expect(site.agent!.stderr()).toContain(`job ${r.jobId}: results delivered`);
        expect(r.result).toMatchObject({ exitCode: 0, state: 'exited', cleanedUp: true, log: 'wrote big\n' });
        const line = await readFile(join(r.dir, 'big-sha.txt'), 'utf8');
        expect(line).toBe(`${await sha256(join(r.dir, 'big.bin'))}  big.bin\n`);
        expect(runs(r.jobId)).toBe('x\n');
        await leftSite(r.jobId);
      });

      it('the site loses a started job while the agent is down (its dir removed): the new agent reports it lost and never runs it again', async () => {
        let done: Promise<void> | undefined;
        let text = '';
        const r = await run(['hold', '8'], [], (e, jobId) => {
          if (e.type === 'log') text += e.text;
          if (!done && text.includes('line 3\n')) {
            done = (async () => {
              site.agent!.child.kill('SIGKILL');
              await site.agent!.stop();
              await writeFile(join(state, `release-${jobId}`), '');
              const pid = Number(readFileSync(join(state, `pid-${jobId}`), 'utf8'));
              await until('the program to end', () => !alive(pid));
              // The gateway's runner writes the exit status after the program's end: removing the
              // dir before that raced it (ENOTEMPTY under load, and the agent was never restarted).
              await until("the job's exit status on disk", () => existsSync(join(site.root, jobId, 'exit')));
              await rm(join(site.root, jobId), { recursive: true, force: true });
              await site.startAgent!();
            })();
          }
        });
        await done;
        expect(r.result).toMatchObject({ state: 'lost', failed: true });
        expect(r.result.log).toContain('line 3\n');
        expect(runs(r.jobId)).toBe('x\n');
        expect(site.agent!.stderr()).toContain(`job ${r.jobId}: the hub says running, the site has no such job: reported lost`);
      });

      it('the agent is killed mid-job and a new one started: it resumes the job, never runs it twice, loses no output', async () => {
        let killed: Promise<void> | undefined;
        let text = '';
        const r = await run(['hold', '8'], [input], (e, jobId) => {
          if (e.type === 'log') text += e.text;
          if (!killed && text.includes('line 4\n')) {
            killed = (async () => {
              const agent = site.agent!;
              agent.child.kill('SIGKILL');
              await agent.stop();
              // The program goes on meanwhile: its lines pile up on the site, unsent.
              await new Promise((res) => setTimeout(res, 1000));
              await site.startAgent!();
              await writeFile(join(state, `release-${jobId}`), '');
            })();
          }
        });
        await killed;
        await expectIntact(r, { ...expectedTrees.hold(8), 'upload.bin': hex(inputBytes()) }, holdLog(8));
      });
    }

    shared(`limits: the site full (--max-jobs ${MAX_JOBS}): one more job is refused at its start (GatewayError E_LIMIT), never runs, nothing stays; the others finish`, async () => {
      await freshProxy();
      const ids = Array.from({ length: MAX_JOBS }, () => randomUUID());
      const holding = ids.map(async (jobId) => runRemote({ host: site.host(), jobId, args: ['hold', '1'], outputDir: await out() }));
      await until('the site to be full', () => ids.every((id) => runs(id) !== ''));
      const extra = randomUUID();
      const error = await runRemote({ host: site.host(), jobId: extra, args: ['exit', '0'], outputDir: await out() }).then(
        () => undefined,
        (e: unknown) => e,
      );
      for (const id of ids) await writeFile(join(state, `release-${id}`), '');
      expect(error).toBeInstanceOf(GatewayError);
      expect(error).toMatchObject({ gatewayCode: 'E_LIMIT', jobId: extra });
      expect(runs(extra)).toBe('');
      for (const result of await Promise.all(holding)) expect(result).toMatchObject({ exitCode: 0, state: 'exited', log: holdLog(1) });
      await leftSite(extra);
      expect((await listJobs(site.host())).map((j) => j.jobId)).not.toContain(extra);
    });

    shared(`limits: the site full, a job with waitForSlot waits ('waiting' events) and runs once a slot frees`, async () => {
      await freshProxy();
      const ids = Array.from({ length: MAX_JOBS }, () => randomUUID());
      const holding = ids.map(async (jobId) => runRemote({ host: site.host(), jobId, args: ['hold', '1'], outputDir: await out() }));
      await until('the site to be full', () => ids.every((id) => runs(id) !== ''));
      const extra = randomUUID();
      const events: JobEvent[] = [];
      const waiting = runRemote({ host: site.host(), jobId: extra, args: ['exit', '0'], outputDir: await out(), waitForSlot: true, onEvent: (e) => events.push(e) });
      await until('a waiting event', () => events.some((e) => e.type === 'waiting'));
      expect(runs(extra)).toBe('');
      await writeFile(join(state, `release-${ids[0]}`), '');
      const result = await waiting;
      expect(result).toMatchObject({ exitCode: 0, state: 'exited', log: 'exit 0\n', cleanedUp: true });
      expect(runs(extra)).toBe('x\n');
      await writeFile(join(state, `release-${ids[1]}`), '');
      for (const r of await Promise.all(holding)) expect(r).toMatchObject({ exitCode: 0, log: holdLog(1) });
      await leftSite(extra);
    });

    shared('limits: an input over the site\'s per-job size is refused (GatewayError E_LIMIT), the program never runs, nothing stays', async () => {
      const big = join(work, 'big.bin');
      await writeFile(big, Buffer.alloc((MAX_JOB_MB + 2) * 1024 * 1024, 1));
      const jobId = randomUUID();
      const error = await run(['exit', '0'], [big], undefined, jobId).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(GatewayError);
      expect(error).toMatchObject({ gatewayCode: 'E_LIMIT' });
      expect(runs(jobId)).toBe('');
      await leftSite(jobId);
      expect((await listJobs(site.host())).find((j) => j.jobId === jobId)).toBeUndefined();
    });
  });
}
