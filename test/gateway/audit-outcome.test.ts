/**
 * The audit log records what came of each request, not only that it was accepted (issue 14, item
 * 14): an accepted request has a `decision=accepted` line written before it acts and an `outcome=`
 * line with the same req= after; a refusal is its one line; the program's end is a `verb=program`
 * line. Each case through the real sshd, gateway and rsync; dash = bash is in shells.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';
import { openGateway, readAudit, runCli, writeRshWrapper, type AuditLine, type GatewaySession } from '../support/hostile-helpers.js';

/** `verb event` of each line, the way a reader of the log sees a request's story. */
// (A download's outcome also carries outputs=, the served manifest's digest: integrity.test's.)
const story = (lines: AuditLine[]): string[] => lines.map((l) => `${l.verb} ${l.decision ? `decision=${l.decision}` : `outcome=${l.outcome}`}${/ exit=\S+(?= outputs=|$)/.exec(l.raw)?.[0] ?? ''}`);

describe('the audit log records each request\'s outcome', { timeout: 120_000 }, async () => {
  const dir = await freshDir();
  const program = join(dir, 'p.sh');
  await writeFile(
    program,
    `#!/bin/sh
case $1 in
  three) echo three; exit 3 ;;
  sleep) exec sleep 30 ;;
  stubborn) trap '' TERM; while :; do sleep 0.1; done ;;
  *) echo ok ;;
esac
`,
  );
  await chmod(program, 0o755);
  const sandbox = useSandbox({ program, gateway: { grace: 1 } });
  let gw: GatewaySession;
  beforeAll(async () => {
    gw = await openGateway(sandbox());
  });
  afterAll(() => gw?.close());

  const ofJob = async (job: string): Promise<AuditLine[]> => (await readAudit(sandbox().root)).filter((l) => l.raw.includes(` job=${job} `));
  const waitForState = async (job: string, state: RegExp): Promise<void> => {
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      if (state.test((await gw.run(`mint-gw status ${job}`)).stdout.toString())) return;
    }
    throw new Error(`job ${job} never reached ${state}`);
  };

  it('a successful job: each verb accepted, then ok; the program ok; one req per request', async () => {
    const r = await runRemote({ host: sandbox().host, outputDir: await freshDir() });
    expect(r.exitCode).toBe(0);
    const lines = await ofJob(r.jobId);
    expect(story(lines)).toEqual(['run decision=accepted', 'program outcome=ok exit=0', 'run outcome=ok exit=0', 'takex decision=accepted', 'takex outcome=ok exit=0']);
    expect(new Set(lines.slice(0, 3).map((l) => l.req)).size).toBe(1);
    expect(lines[3]?.req).toBe(lines[4]?.req);
    expect(lines[3]?.req).not.toBe(lines[0]?.req);
  });

  it('a refused request is one line with its code and exit status, and no outcome line', async () => {
    const job = randomUUID();
    expect((await gw.run(`mint-gw status ${job}`)).exitCode).toBe(67);
    const lines = await ofJob(job);
    expect(story(lines)).toEqual(['status decision=refused:E_NOJOB exit=67']);
    expect((await readAudit(sandbox().root)).filter((l) => l.req === lines[0]?.req)).toHaveLength(1);
  });

  it('a request refused after it was accepted names the gateway\'s code in its outcome', async () => {
    const job = randomUUID();
    // Cancelled before it started: run accepts it (already started) but there is no log to follow.
    const put = await runCli('rsync', ['-rt', '-e', await writeRshWrapper(sandbox(), await freshDir()), `${dir}/`, 'h:x'], { env: { ...process.env, MGW_VERB: 'put', MGW_JOB: job } });
    expect(put.code).toBe(0);
    expect((await gw.run(`mint-gw cancel ${job}`)).exitCode).toBe(0);
    expect((await gw.run(`mint-gw run ${job}`)).exitCode).toBe(68);
    expect(story((await ofJob(job)).filter((l) => l.verb === 'run'))).toEqual(['run decision=already-started', 'run outcome=error:E_STATE exit=68']);
  });

  it('a failing transfer: the put is accepted, then failed with rsync\'s own exit code', async () => {
    const job = randomUUID();
    const rsh = await writeRshWrapper(sandbox(), await freshDir());
    const src = await freshDir();
    await mkdir(join(src, 'x'));
    await writeFile(join(src, 'x', 'inner'), 'a directory first\n');
    const env = { ...process.env, MGW_VERB: 'put', MGW_JOB: job };
    expect((await runCli('rsync', ['-rt', '-e', rsh, `${src}/`, 'h:x'], { env })).code).toBe(0);
    // Then a file where the job holds a non-empty directory: rsync's receiver cannot make way (23).
    const again = await freshDir();
    await writeFile(join(again, 'x'), 'now a file\n');
    const failed = await runCli('rsync', ['-rt', '-e', rsh, `${again}/`, 'h:x'], { env });
    expect(failed.code).toBe(23);
    expect(story(await ofJob(job))).toEqual(['put decision=accepted', 'put outcome=ok exit=0', 'put decision=accepted', 'put outcome=failed exit=23']);
  });

  it('a program that exits 3: run ok (it followed the log to the end), the program failed with 3', async () => {
    const r = await runRemote({ host: sandbox().host, args: ['three'], outputDir: await freshDir() });
    expect(r.exitCode).toBe(3);
    expect(story(await ofJob(r.jobId))).toEqual([
      'run decision=accepted',
      'program outcome=failed exit=3',
      'run outcome=ok exit=0',
      // A failed job is fetched and kept: takex (a small job's results come inline) served it, and
      // the client did not answer `remove`.
      'takex decision=accepted',
      'takex outcome=ok exit=0',
    ]);
  });

  it('a cancelled program: the runner records cancelled with its status, under the start\'s req', async () => {
    const job = randomUUID();
    expect((await gw.run(`mint-gw start ${job} sleep`)).exitCode).toBe(0);
    await waitForState(job, /^pid=\d+$/m);
    expect((await gw.run(`mint-gw cancel ${job}`)).exitCode).toBe(0);
    const lines = (await ofJob(job)).filter((l) => l.verb !== 'status');
    expect(story(lines)).toEqual([
      'start decision=accepted',
      'start outcome=ok exit=0',
      'cancel decision=accepted',
      'program outcome=cancelled exit=143',
      'cancel outcome=ok exit=0',
    ]);
    expect(lines[3]?.req).toBe(lines[0]?.req);
  });

  it('a program that outlives the grace period: cancel KILLs it and writes the program\'s line itself', async () => {
    const job = randomUUID();
    expect((await gw.run(`mint-gw start ${job} stubborn`)).exitCode).toBe(0);
    await waitForState(job, /^pid=\d+$/m);
    const cancel = await gw.run(`mint-gw cancel ${job}`);
    expect(cancel.exitCode).toBe(0);
    // The reply itself says cancelled: a KILLed runner its reaper had not yet collected (a zombie)
    // used to count as alive, and the reply said running.
    expect(cancel.stdout.toString()).toMatch(/^state=cancelled$/m);
    const lines = (await ofJob(job)).filter((l) => l.verb !== 'status');
    expect(story(lines)).toEqual([
      'start decision=accepted',
      'start outcome=ok exit=0',
      'cancel decision=accepted',
      'program outcome=cancelled exit=-',
      'cancel outcome=ok exit=0',
    ]);
    expect(lines[3]?.req).toBe(lines[2]?.req);
  });
});
