/**
 * Fault injection: a real sshd and the real gateway, with a TCP proxy in between that cuts the one
 * SSH connection at chosen points (mid-upload, mid-run, mid-download). Every repetition must end
 * exactly as a run without faults does: exit 0, the same output bytes, the whole log once and in
 * order, the program run once, a reconnect on the record, and nothing left running remotely.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError, runRemote, type JobEvent, type RemoteResult } from '../../src/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/sandbox.js';
import type { InlineHost } from '../../src/config/resolve-host.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { freshDir, sha256 } from '../support/fixture.js';

const REPS = 10;
const FAST_RETRY = { retries: 8, minTimeoutMs: 50, maxTimeoutMs: 400, maxRetryTimeMs: 30_000 };
const INPUT_SIZE = 4 * 1024 * 1024;
/** `seq 1 600000`: 3,988,895 bytes of numbered lines, so a lost, doubled or moved block shows. */
const SEQ_COUNT = 600_000;

/**
 * The remote program. `STATE` (a local dir, baked in) is outside the job's work dir: the program
 * counts its runs there and leaves its pid. Modes:
 *   upload LINES        hash the inputs into input-hashes.txt, print LINES numbered lines
 *   run LINES PAUSE [hold]
 *                       print LINES numbered lines, PAUSE seconds apart; with hold, then wait (30 s
 *                       at most) for the test to create STATE/release-JOB, so a cut made before the
 *                       release surely lands while the program runs
 *   download LINES      write a few MB of output, print LINES numbered lines
 *   spin LINES          print LINES numbered lines, then loop in short sleeps (for 30 s at most)
 */
function programText(state: string): string {
  return `#!/bin/sh
# mint-ssh-exec fault-test program
set -eu
STATE=${state}
echo x >> "$STATE/runs-$MINT_JOB_ID"
echo $$ > "$STATE/pid-$MINT_JOB_ID"
mode=$1
lines=$2
pause=\${3:-0}
case $mode in
  upload) sha256sum *.bin > input-hashes.txt ;;
  download) seq 1 ${SEQ_COUNT} > numbers.txt; sha256sum numbers.txt > numbers.sha256 ;;
esac
i=1
while [ $i -le "$lines" ]; do
  echo "line $i"
  if [ "$pause" != 0 ]; then sleep "$pause"; fi
  i=$((i + 1))
done
if [ "\${4:-}" = hold ]; then
  n=0
  while [ ! -e "$STATE/release-$MINT_JOB_ID" ]; do
    sleep 0.02
    n=$((n + 1))
    if [ $n -ge 1500 ]; then echo "never released" >&2; exit 3; fi
  done
fi
if [ "$mode" = spin ]; then
  n=0
  while [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
fi
exit 0
`;
}

function expectedLog(lines: number): string {
  return Array.from({ length: lines }, (_, i) => `line ${i + 1}\n`).join('');
}

/** Every file (relative path -> sha256) and directory under dir, for a byte-for-byte comparison with the no-fault run. */
async function hashTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      // The job record (its times and job id differ from run to run) is checked in integrity.test.ts.
      if (d === dir && entry.name === '.mint-job.json') continue;
      const path = join(d, entry.name);
      if (entry.isDirectory()) {
        // Directories count too: an empty leftover (say rsync's .mint-partial) is a difference.
        out[`${relative(dir, path)}/`] = 'dir';
        await walk(path);
      } else out[relative(dir, path)] = await sha256(path);
    }
  };
  await walk(dir);
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

function pgrep(args: string[]): string[] {
  try {
    return execFileSync('pgrep', args, { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/**
 * Processes whose command line holds any of the patterns (fixed strings), or that are in the job's
 * process group (the runner's pid), as `pid cmdline` lines.
 */
function processesMatching(patterns: string[], pgid: number | undefined): string[] {
  const found = patterns.flatMap((pattern) => pgrep(['-af', '--', pattern.replace(/[.[\]()*+?^$|\\]/g, '\\$&')]));
  if (pgid !== undefined && pgid > 1) found.push(...pgrep(['-a', '-g', String(pgid)]));
  return [...new Set(found)];
}

/** Waits (a few seconds at most) for every remote process of the job to be gone; returns what is left. */
async function leftoverProcesses(patterns: string[], pgid: number | undefined, waitMs = 5000): Promise<string[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const left = processesMatching(patterns, pgid);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Collects a job's log events; says whether a whole line has arrived yet (chunks may split lines). */
function logWatcher(): (event: JobEvent, line: string) => boolean {
  let text = '\n';
  return (event, line) => {
    if (event.type === 'log') text += event.text;
    return text.includes(`\n${line}\n`);
  };
}

interface Tally {
  cutPoint: string;
  tried: number;
  intact: number;
  reconnects: number;
  failures: string[];
}

const tallies: Tally[] = [];

/** Temp dirs made by the tests (output dirs of a few MB each), removed as soon as they are checked. */
const scratch = new Set<string>();
async function scratchDir(): Promise<string> {
  const dir = await freshDir();
  scratch.add(dir);
  return dir;
}
async function dropScratch(dir?: string): Promise<void> {
  for (const d of dir ? [dir] : [...scratch]) {
    scratch.delete(d);
    await rm(d, { recursive: true, force: true });
  }
}
afterEach(() => dropScratch());

describe('a dropped connection at any point of a job changes nothing in its outcome', () => {
  let sandbox: Sandbox;
  let state: string;
  let proxy: FaultProxy;
  let work: string;
  let input: string;
  const baseline: Record<string, { files: Record<string, string>; log: string }> = {};

  beforeAll(async () => {
    state = await freshDir();
    const programDir = await freshDir();
    const program = join(programDir, 'fault-prog.sh');
    await writeFile(program, programText(state));
    await chmod(program, 0o755);
    sandbox = await startSandbox({ program });
    await rm(programDir, { recursive: true, force: true }); // the sandbox keeps its own copy
    proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: sandbox.port } });
    work = await freshDir();
    input = join(work, 'upload.bin');
    await writeFile(input, randomBytes(INPUT_SIZE));
  });

  afterAll(async () => {
    await proxy?.close();
    await sandbox?.stop();
    for (const dir of [state, work]) if (dir) await rm(dir, { recursive: true, force: true });
    if (tallies.length > 0) {
      const rows = tallies.map((t) => `  ${t.cutPoint.padEnd(34)} ${String(t.tried).padStart(10)} ${String(t.intact).padStart(11)} ${String(t.reconnects).padStart(11)}`);
      console.log(
        [
          '',
          'fault injection summary (real sshd, real gateway, TCP proxy cutting the one SSH connection)',
          `  ${'cut point'.padEnd(34)} ${'runs tried'.padStart(10)} ${'runs intact'.padStart(11)} ${'reconnects'.padStart(11)}`,
          ...rows,
          ...tallies.flatMap((t) => t.failures.map((f) => `  FAILED ${t.cutPoint}: ${f}`)),
          '',
        ].join('\n'),
      );
    }
  });

  /** The sandbox reached through the proxy; the host key is pinned because the port differs from known_hosts. */
  const viaProxy = (retry = FAST_RETRY): InlineHost & { name: string } => ({
    ...sandbox.host,
    port: proxy.port,
    hostKeyFingerprint: sandbox.hostKeyFingerprint,
    retry,
  });

  interface JobRun {
    result: RemoteResult;
    events: JobEvent[];
    outputDir: string;
    jobId: string;
  }

  async function runJob(
    args: string[],
    inputs: string[],
    onEvent?: (event: JobEvent) => void,
    jobId = randomUUID(),
    retry = FAST_RETRY,
  ): Promise<JobRun> {
    const outputDir = join(await scratchDir(), 'out');
    const events: JobEvent[] = [];
    const result = await runRemote({
      host: viaProxy(retry),
      jobId,
      inputs,
      outputDir,
      args,
      onEvent: (event) => {
        events.push(event);
        onEvent?.(event);
      },
    });
    return { result, events, outputDir, jobId };
  }

  /** Everything a run must show to count as intact; throws with the first thing that differs. */
  async function checkIntact(mode: string, lines: number, run: JobRun, cut: boolean): Promise<void> {
    const { result, outputDir, jobId, events } = run;
    const retries = events.filter((e) => e.type === 'retrying').map((e) => (e.type === 'retrying' ? `${e.step}: ${e.error.message.split('\n')[0]}` : ''));
    const where = `job ${jobId} (connections ${result.connections}; retries: ${retries.join(' / ') || 'none'})`;
    expect(result.exitCode, where).toBe(0);
    expect(result.state, where).toBe('exited');
    // The log: every numbered line exactly once, in order, nothing else.
    const numbers = result.log.split('\n').filter(Boolean).map((line) => Number(/^line (\d+)$/.exec(line)?.[1] ?? NaN));
    expect(numbers, `${where}: log lines`).toEqual(Array.from({ length: lines }, (_, i) => i + 1));
    expect(result.log, where).toBe(expectedLog(lines));
    // Outputs (and the saved log) byte-identical to the run without faults.
    expect(await hashTree(outputDir), `${where}: output files`).toEqual(baseline[mode]!.files);
    // The program ran exactly once.
    expect(await readFile(join(state, `runs-${jobId}`), 'utf8'), `${where}: runs`).toBe('x\n');
    if (cut) expect(result.connections, `${where}: a reconnect must have happened`).toBeGreaterThan(1);
    else expect(result.connections, where).toBe(1);
    expect(result.cleanedUp, where).toBe(true);
    expect(existsSync(join(sandbox.root, jobId)), `${where}: remote job dir`).toBe(false);
    // Nothing of the job still running on the remote side: program, runner, gateway verbs, tail, rsync.
    const pgid = events.find((e): e is Extract<JobEvent, { type: 'started' }> => e.type === 'started')?.pid;
    expect(await leftoverProcesses([sandbox.program, jobId], pgid), `${where}: remote processes`).toEqual([]);
  }

  async function establishBaseline(mode: string, args: string[], inputs: string[], lines: number): Promise<void> {
    const run = await runJob(args, inputs);
    baseline[mode] = { files: await hashTree(run.outputDir), log: run.result.log };
    // The no-fault run itself must be clean (and is the reference for the others).
    await checkIntact(mode, lines, run, false);
    expect(run.events.some((e) => e.type === 'retrying')).toBe(false);
  }

  async function repeat(cutPoint: string, body: (rep: number) => Promise<JobRun>, check: (run: JobRun) => Promise<void>): Promise<Tally> {
    const tally: Tally = { cutPoint, tried: 0, intact: 0, reconnects: 0, failures: [] };
    tallies.push(tally);
    for (let rep = 0; rep < REPS; rep += 1) {
      tally.tried += 1;
      // A fresh proxy per repetition: a trigger that did not fire cannot leak into the next one.
      const shared = proxy;
      proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: sandbox.port } });
      try {
        const run = await body(rep);
        expect(proxy.stats().cuts, 'the proxy must have cut the connection').toBeGreaterThan(0);
        tally.reconnects += run.result.connections - 1;
        await check(run);
        tally.intact += 1;
      } catch (error) {
        tally.failures.push(`rep ${rep}: ${(error as Error).message.split('\n').slice(0, 6).join(' | ')}`);
      } finally {
        await proxy.close();
        proxy = shared;
        await dropScratch();
      }
    }
    return tally;
  }

  it('cut after N bytes of upload: resumes the upload, runs once, same outputs', async () => {
    const lines = 20;
    const args = ['upload', String(lines)];
    await establishBaseline('upload', args, [input], lines);
    expect(baseline.upload!.files['input-hashes.txt']).toBeDefined();
    const tally = await repeat(
      'upload (after 10-82% of 4 MB up)',
      (rep) => {
        // 10%, 18%, ... 82% of the input; every third rep over a slightly slower link.
        proxy.setLatency(rep % 3 === 2 ? 2 : 0);
        proxy.cutAfterUpstreamBytes(Math.round(INPUT_SIZE * (0.1 + 0.08 * rep)));
        return runJob(args, [input]);
      },
      async (run) => {
        expect(run.events.some((e) => e.type === 'retrying' && e.step === 'upload'), 'a retry of the upload step').toBe(true);
        await checkIntact('upload', lines, run, true);
      },
    );
    expect(tally.failures).toEqual([]);
    expect(tally.intact).toBe(REPS);
  }, 240_000);

  it('cut while the program runs: the log resumes at its offset, nothing lost or doubled', async () => {
    const lines = 20;
    const args = ['run', String(lines), '0.03'];
    await establishBaseline('run', args, [], lines);
    const tally = await repeat(
      'run (while printing lines 1-20)',
      (rep) => {
        const jobId = randomUUID();
        let armed = true;
        const cutThenRelease = (): void => {
          proxy.cutAll();
          // The program holds after its last line until released: the cut came while it ran.
          void writeFile(join(state, `release-${jobId}`), '');
        };
        const cut = (): void => {
          if (!armed) return;
          armed = false;
          // Now, or a little later, so the cut lands at different points of the log stream.
          const delay = (rep % 3) * 15;
          if (delay === 0) cutThenRelease();
          else setTimeout(cutThenRelease, delay);
        };
        // rep 0 cuts as soon as the job has started; the others when line 2, 4, ... 18 arrives.
        const seen = logWatcher();
        return runJob(
          [...args, 'hold'],
          [],
          (event) => {
            if (rep === 0 && event.type === 'started') cut();
            if (rep > 0 && seen(event, `line ${2 * rep}`)) cut();
          },
          jobId,
        );
      },
      async (run) => {
        // Every retry was of the run step (following the log), none of the download or cleanup.
        const retried = run.events.flatMap((e) => (e.type === 'retrying' ? [e.step] : []));
        expect(retried.every((step) => step === 'run'), `retried steps: ${retried.join(', ')}`).toBe(true);
        await checkIntact('run', lines, run, true);
      },
    );
    expect(tally.failures).toEqual([]);
    expect(tally.intact).toBe(REPS);
  }, 240_000);

  it('cut after N bytes of download: resumes the download, outputs byte-identical', async () => {
    const lines = 10;
    const args = ['download', String(lines)];
    await establishBaseline('download', args, [], lines);
    expect(baseline.download!.files['numbers.txt']).toBeDefined();
    const outputBytes = 3_988_895;
    const tally = await repeat(
      'download (after 10-82% of 4 MB down)',
      (rep) => {
        proxy.setLatency(rep % 3 === 2 ? 2 : 0);
        // Armed when the program has exited, so the bytes counted are the download's.
        return runJob(args, [], (event) => {
          if (event.type === 'exited') proxy.cutAfterDownstreamBytes(Math.round(outputBytes * (0.1 + 0.08 * rep)));
        });
      },
      async (run) => {
        expect(run.events.some((e) => e.type === 'retrying' && e.step === 'download'), 'a retry of the download step').toBe(true);
        await checkIntact('download', lines, run, true);
      },
    );
    expect(tally.failures).toEqual([]);
    expect(tally.intact).toBe(REPS);
  }, 240_000);

  it('a program killed by a signal is reported (state and 128+9), not a crash', async () => {
    let killed: Promise<void> | undefined;
    const jobId = randomUUID();
    const seen = logWatcher();
    const run = await runJob(
      ['spin', '3'],
      [],
      (event) => {
        if (!killed && seen(event, 'line 3')) {
          killed = (async () => {
            const pid = Number((await readFile(join(state, `pid-${jobId}`), 'utf8')).trim());
            expect(pid).toBeGreaterThan(1);
            process.kill(pid, 'SIGKILL');
          })();
        }
      },
      jobId,
    );
    // runJob resolved: the kill was a result, not an exception.
    await killed;
    expect(killed).toBeDefined();
    expect(run.result.state).toBe('exited');
    expect(run.result.exitCode).toBe(128 + 9);
    expect(run.result.failed).toBe(true);
    expect(run.result.log).toBe(expectedLog(3));
    expect(run.result.cleanedUp).toBe(false);
    expect(await readFile(join(state, `runs-${run.jobId}`), 'utf8')).toBe('x\n');
    const started = run.events.find((e): e is Extract<JobEvent, { type: 'started' }> => e.type === 'started');
    expect(await leftoverProcesses([sandbox.program, run.jobId], started?.pid)).toEqual([]);
  }, 90_000);

  it('sshd restarted mid-run (and the connection cut): the job still completes', async () => {
    const lines = 20;
    const args = ['run', String(lines), '0.03'];
    const cutsBefore = proxy.stats().cuts;
    let restart: Promise<void> | undefined;
    const seen = logWatcher();
    const jobId = randomUUID();
    const run = await runJob(
      [...args, 'hold'],
      [],
      (event) => {
        if (!restart && seen(event, 'line 5')) {
          restart = (async () => {
            const restarting = sandbox.restartSshd();
            // While sshd is down, reconnects are refused; they must be retried until it is back.
            proxy.cutAll();
            await restarting;
            // The program holds until now: the restart surely happened while it ran.
            await writeFile(join(state, `release-${jobId}`), '');
          })();
        }
      },
      jobId,
      // Still fast, but with room for a restart that is slow on a loaded machine (up to ~2 s to stop sshd).
      { ...FAST_RETRY, retries: 12, maxTimeoutMs: 1000 },
    );
    await restart;
    expect(restart).toBeDefined();
    expect(proxy.stats().cuts).toBeGreaterThan(cutsBefore);
    await checkIntact('run', lines, run, true);
    tallies.push({ cutPoint: 'run + sshd restart', tried: 1, intact: 1, reconnects: run.result.connections - 1, failures: [] });
  }, 90_000);
});

describe('a full disk refuses the upload, and is not retried', () => {
  let sandbox: Sandbox;
  let state: string;

  beforeAll(async () => {
    state = await freshDir();
    const programDir = await freshDir();
    const program = join(programDir, 'fault-prog.sh');
    await writeFile(program, programText(state));
    await chmod(program, 0o755);
    sandbox = await startSandbox({ program, gateway: { minFreeMb: 999_999_999 } });
    await rm(programDir, { recursive: true, force: true }); // the sandbox keeps its own copy
  });

  afterAll(async () => {
    await sandbox?.stop();
    if (state) await rm(state, { recursive: true, force: true });
  });

  it('GatewayError GATEWAY_REFUSED / E_LIMIT, one connection, no retry, nothing ran', async () => {
    const dir = await scratchDir();
    const file = join(dir, 'a.bin');
    await writeFile(file, randomBytes(64 * 1024));
    const events: JobEvent[] = [];
    const jobId = randomUUID();
    const error = await runRemote({
      host: { ...sandbox.host, retry: FAST_RETRY },
      jobId,
      inputs: [file],
      outputDir: join(dir, 'out'),
      args: ['upload', '1'],
      onEvent: (e) => events.push(e),
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'GATEWAY_REFUSED', gatewayCode: 'E_LIMIT', step: 'upload', retryable: false });
    expect(events.filter((e) => e.type === 'retrying')).toEqual([]);
    expect(events.filter((e) => e.type === 'connecting')).toHaveLength(1);
    expect(events.some((e) => e.type === 'started')).toBe(false);
    expect(existsSync(join(state, `runs-${jobId}`))).toBe(false);
  });
});
