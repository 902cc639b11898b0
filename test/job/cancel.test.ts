/**
 * Cancelling a job (AbortSignal, timeoutMs) stops the remote program's whole process group, a
 * program that ignores TERM is KILLed after the gateway's grace time, and a job whose MInt side
 * died (the process holding runRemote killed with -9) is picked up again with attach.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attach, CancelledError, runRemote, type JobEvent, type RemoteResult } from '../../src/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/sandbox.js';
import { freshDir, sha256, useScratchDirs } from '../support/fixture.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** The gateway's --grace for this file's sandbox: short, so the KILL test does not wait 10 s. */
const GRACE_S = 4;
/** Digits only this run uses, in the sleep arguments of the program's children, so pgrep finds exactly them. */
const NONCE = String(Date.now() % 1_000_000_000).padStart(9, '0') + String(process.pid).padStart(7, '0');
const ATTACH_SEQ = 100_000;

/**
 * Modes:
 *   family    starts a child (sleep) and a grandchild (sh -> sleep), then prints numbered lines for a minute
 *   stubborn  the same, but the shell answers TERM with a message and goes on, and its child ignores TERM
 *   work      prints 20 numbered lines over about 2 s, then writes result.txt
 */
function programText(state: string): string {
  return `#!/bin/sh
# mint-ssh-exec cancel-test program
set -u
STATE=${state}
echo x >> "$STATE/runs-$MINT_JOB_ID"
echo $$ > "$STATE/pid-$MINT_JOB_ID"
case $1 in
  family)
    sleep 300.${NONCE} &
    sh -c 'sleep 301.${NONCE} & wait' &
    echo "children started"
    ;;
  stubborn)
    trap 'echo "TERM received, ignoring it"' TERM
    ( trap '' TERM; exec sleep 302.${NONCE} ) &
    sh -c 'trap "" TERM; sleep 303.${NONCE} & wait' &
    echo "children started"
    ;;
  work)
    i=1
    while [ $i -le 20 ]; do echo "line $i"; sleep 0.1; i=$((i + 1)); done
    seq 1 ${ATTACH_SEQ} > result.txt
    echo "done"
    exit 0
    ;;
esac
i=1
while [ $i -le 600 ]; do echo "line $i"; sleep 0.1; i=$((i + 1)); done
exit 0
`;
}

function escapeRegex(s: string): string {
  return s.replace(/[.[\]()*+?^$|\\]/g, '\\$&');
}

function pgrep(args: string[]): string[] {
  try {
    return execFileSync('pgrep', args, { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return []; // exit 1: nothing matches
  }
}

/** Processes whose command line holds any of these fixed strings, or that are in this process group. */
function jobProcesses(patterns: string[], pgid?: number): string[] {
  const found = patterns.flatMap((p) => pgrep(['-af', '--', escapeRegex(p)]));
  if (pgid !== undefined && pgid > 1) found.push(...pgrep(['-a', '-g', String(pgid)]));
  return [...new Set(found)];
}

async function until<T>(probe: () => T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits (a few seconds at most) for these processes to be gone; returns what is left. */
async function leftover(patterns: string[], pgid?: number, waitMs = 5000): Promise<string[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const left = jobProcesses(patterns, pgid);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Temp dirs the tests make, removed after each test. */
const scratchDir = useScratchDirs();

describe('cancel and attach against a real sshd and the real gateway', () => {
  let sandbox: Sandbox;
  let state: string;

  beforeAll(async () => {
    state = await freshDir();
    const programDir = await freshDir();
    const program = join(programDir, 'cancel-prog.sh');
    await writeFile(program, programText(state));
    await chmod(program, 0o755);
    sandbox = await startSandbox({ program, gateway: { grace: GRACE_S } });
    await rm(programDir, { recursive: true, force: true }); // the sandbox keeps its own copy
  });

  afterAll(async () => {
    await sandbox?.stop();
    if (state) await rm(state, { recursive: true, force: true });
  });

  /** The job's process group id (the runner's pid, which the gateway records as `PID STARTTIME`). */
  async function groupOf(jobId: string): Promise<number> {
    const pid = Number((await readFile(join(sandbox.root, jobId, 'pid'), 'utf8')).trim().split(' ')[0]);
    expect(pid).toBeGreaterThan(1);
    return pid;
  }

  /**
   * Starts a job in the given mode and resolves once its log shows `waitFor`, with the job's
   * process group and the (still pending) outcome of runRemote.
   */
  async function startJob(mode: string, waitFor: string, extra: { signal?: AbortSignal; timeoutMs?: number } = {}) {
    const jobId = randomUUID();
    const outputDir = join(await scratchDir(), 'out');
    const events: JobEvent[] = [];
    let log = '';
    const onEvent = (e: JobEvent): void => {
      events.push(e);
      if (e.type === 'log') log += e.text;
    };
    const outcome = runRemote({ host: sandbox.host, jobId, outputDir, args: [mode], ...extra, onEvent }).then(
      (result) => ({ result, error: undefined }),
      (error: unknown) => ({ result: undefined as RemoteResult | undefined, error }),
    );
    await until(() => log.includes(waitFor) || undefined, `"${waitFor.trim()}" in the log of job ${jobId}`, 60_000);
    const pgid = await groupOf(jobId);
    return { jobId, outputDir, events, outcome, pgid, log: () => log };
  }

  function cancelledResult(error: unknown): RemoteResult {
    expect(error).toBeInstanceOf(CancelledError);
    expect(error).toMatchObject({ code: 'CANCELLED' });
    const result = (error as CancelledError).result as RemoteResult;
    expect(result).toBeDefined();
    return result;
  }

  it('an AbortSignal during the run stops the whole process group (child and grandchild) and rejects with the log so far', async () => {
    const controller = new AbortController();
    const job = await startJob('family', 'line 3\n', { signal: controller.signal });
    const family = [`300.${NONCE}`, `301.${NONCE}`];
    // The test means something only if the family is really there: program, child sleep, sh and its sleep.
    const before = jobProcesses(family, job.pgid);
    expect(before.filter((p) => p.includes(`sleep 300.${NONCE}`)), before.join('\n')).toHaveLength(1);
    expect(before.filter((p) => p.includes(`sleep 301.${NONCE}`) && !p.includes('sh -c')), before.join('\n')).toHaveLength(1);
    expect(before.filter((p) => p.includes('sh -c')), before.join('\n')).toHaveLength(1);

    const t = Date.now();
    controller.abort();
    const { result: ok, error } = await job.outcome;
    expect(ok).toBeUndefined();
    const result = cancelledResult(error);
    expect(Date.now() - t).toBeLessThan(60_000);
    expect(error).toMatchObject({ step: 'run', jobId: job.jobId });
    expect(result.state).toBe('cancelled');
    // 128 + 15: TERM ended the program (no KILL needed), and the runner lived to record it.
    expect(result.exitCode).toBe(143);
    expect(result.cancelled).toBe(true);
    expect(result.failed).toBe(true);
    // The default cleanup is on-success: a cancelled job's remote dir stays for inspection.
    expect(result.cleanedUp).toBe(false);
    expect(existsSync(join(sandbox.root, job.jobId, 'remote_program_exec.log'))).toBe(true);
    expect(result.jobId).toBe(job.jobId);
    expect(result.log).toContain('children started\nline 1\nline 2\nline 3\n');
    // The log events (before and after the abort) and the result's log agree.
    expect(result.log).toBe(job.log());
    expect(await readFile(join(result.outputDir, 'remote_program_exec.log'), 'utf8')).toBe(result.log);
    expect(job.events.some((e) => e.type === 'exited' && e.state === 'cancelled')).toBe(true);
    expect(await leftover([...family, job.jobId], job.pgid)).toEqual([]);
    expect(await readFile(join(state, `runs-${job.jobId}`), 'utf8')).toBe('x\n');
  }, 120_000);

  it('an abort during the upload is a cancel (CancelledError), and the partial inputs are removed', async () => {
    const dir = await scratchDir();
    const big = join(dir, 'big.bin');
    await writeFile(big, randomBytes(64 * 1024 * 1024));
    const jobId = randomUUID();
    const controller = new AbortController();
    const error = await runRemote({
      host: sandbox.host,
      jobId,
      inputs: [big],
      outputDir: await scratchDir(),
      signal: controller.signal,
      // Abort once the upload has really begun (some bytes went).
      onEvent: (e) => {
        if (e.type === 'uploading' && e.bytes > 0) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CancelledError);
    expect(error).toMatchObject({ code: 'CANCELLED', jobId });
    for (let i = 0; i < 50 && existsSync(join(sandbox.root, jobId)); i += 1) await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(join(sandbox.root, jobId))).toBe(false);
  });

  it('timeoutMs cancels the same way, with the message saying it timed out', async () => {
    const t = Date.now();
    const job = await startJob('family', 'children started\n', { timeoutMs: 12000 });
    const family = [`300.${NONCE}`, `301.${NONCE}`];
    expect(jobProcesses(family, job.pgid).length).toBeGreaterThanOrEqual(3);
    const { error } = await job.outcome;
    const result = cancelledResult(error);
    expect((error as Error).message).toMatch(/timed out after 12000 ms/);
    expect(Date.now() - t).toBeGreaterThanOrEqual(12000);
    expect(Date.now() - t).toBeLessThan(12000 + 60_000);
    expect(result.state).toBe('cancelled');
    expect(result.exitCode).toBe(143);
    expect(result.cleanedUp).toBe(false);
    expect(existsSync(join(sandbox.root, job.jobId))).toBe(true);
    expect(result.log).toMatch(/^children started\nline 1\n/);
    expect(await leftover([...family, job.jobId], job.pgid)).toEqual([]);
    expect(await readFile(join(state, `runs-${job.jobId}`), 'utf8')).toBe('x\n');
  }, 120_000);

  it(`a program that ignores TERM is KILLed after the grace time (--grace ${GRACE_S})`, async () => {
    const controller = new AbortController();
    const job = await startJob('stubborn', 'line 2\n', { signal: controller.signal });
    const stubborn = [`302.${NONCE}`, `303.${NONCE}`];
    const before = jobProcesses(stubborn);
    const sleepers = (list: string[]): string[] => list.filter((p) => /sleep 30[23]\./.test(p) && !p.includes('sh -c'));
    expect(sleepers(before), before.join('\n')).toHaveLength(2);

    const t = Date.now();
    controller.abort();
    // Well inside the grace time, TERM has been sent and ignored: the children are still there.
    await new Promise((r) => setTimeout(r, 1500));
    const during = jobProcesses(stubborn);
    expect(sleepers(during), during.join('\n')).toHaveLength(2);

    const { error } = await job.outcome;
    const result = cancelledResult(error);
    expect(Date.now() - t).toBeLessThan(GRACE_S * 1000 + 60_000);
    expect(result.state).toBe('cancelled');
    // Not 143: TERM did not end it; KILL took the runner too (no exit status) or left 137.
    expect([undefined, 137]).toContain(result.exitCode);
    expect(result.log).toContain('TERM received, ignoring it');
    expect(result.log).toMatch(/^children started\nline 1\nline 2\n/);
    expect(await leftover([...stubborn, job.jobId], job.pgid)).toEqual([]);
  }, 120_000);

  describe('attach after the MInt side died', () => {
    beforeAll(() => {
      // The child process runs the built package: it cannot import TypeScript sources.
      try {
        execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'pipe', timeout: 110_000 });
      } catch (error) {
        const e = error as { stdout?: Buffer; stderr?: Buffer; message: string };
        throw new Error(`npm run build failed: ${e.message}\n${e.stdout?.toString() ?? ''}${e.stderr?.toString() ?? ''}`);
      }
      expect(existsSync(join(ROOT, 'dist', 'index.js'))).toBe(true);
    }, 120_000);

    it('the job goes on without its caller, and attach waits for it, downloads the outputs and cleans up', async () => {
      const dir = await scratchDir();
      const inputPath = join(dir, 'in.dat');
      await writeFile(inputPath, randomBytes(200_000));
      const jobId = randomUUID();
      const firstOut = join(dir, 'first');
      const script = join(dir, 'mint-side.mjs');
      await writeFile(
        script,
        `import { runRemote } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'index.js')).href)};
const options = JSON.parse(process.argv[2]);
await runRemote({
  ...options,
  onEvent: (event) => {
    if (event.type === 'started') process.stdout.write('STARTED ' + event.jobId + '\\n');
  },
});
process.stdout.write('FINISHED\\n');
`,
      );
      const child = spawn(process.execPath, [script, JSON.stringify({ host: sandbox.host, jobId, inputs: [inputPath], outputDir: firstOut, args: ['work'] })], {
        stdio: ['ignore', 'pipe', 'pipe'],
        // Its temp files (the rsync bridge's socket dir), which a killed process cannot remove, land in our scratch dir.
        env: { ...process.env, TMPDIR: dir },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
      try {
        await until(() => stdout.includes(`STARTED ${jobId}\n`) || child.exitCode !== null, 'the child to report the job started', 60_000);
        expect(stdout, stderr).toContain(`STARTED ${jobId}`);
        // The MInt side crashes: no cancel, no cleanup, its connection simply goes.
        child.kill('SIGKILL');
        expect(await exited).toBe('SIGKILL');
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      expect(stdout).not.toContain('FINISHED');
      // The job is still running on the remote side (it prints for about 2 s).
      expect(existsSync(join(sandbox.root, jobId, 'exit'))).toBe(false);
      const pgid = await groupOf(jobId);

      const outputDir = join(dir, 'attached');
      const events: JobEvent[] = [];
      const result = await attach({ host: sandbox.host, jobId, outputDir, onEvent: (e) => events.push(e) });
      expect(result.exitCode).toBe(0);
      expect(result.state).toBe('exited');
      expect(result.jobId).toBe(jobId);
      const lines = Array.from({ length: 20 }, (_, i) => `line ${i + 1}\n`).join('');
      expect(result.log).toBe(`${lines}done\n`);
      const expected = createHash('sha256').update(Array.from({ length: ATTACH_SEQ }, (_, i) => `${i + 1}\n`).join('')).digest('hex');
      expect(await sha256(join(outputDir, 'result.txt'))).toBe(expected);
      expect(await sha256(join(outputDir, 'in.dat'))).toBe(await sha256(inputPath));
      expect(result.files.sort()).toEqual(['in.dat', 'result.txt']);
      expect(await readFile(join(outputDir, 'remote_program_exec.log'), 'utf8')).toBe(result.log);
      expect(result.cleanedUp).toBe(true);
      expect(existsSync(join(sandbox.root, jobId))).toBe(false);
      expect(await readFile(join(state, `runs-${jobId}`), 'utf8')).toBe('x\n');
      expect(events.map((e) => e.type)).toContain('done');
      expect(await leftover([jobId], pgid)).toEqual([]);
    }, 120_000);
  });
});
