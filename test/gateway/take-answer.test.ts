/**
 * `mint-gw take JOB CAPS`: the gateway sends the work dir with rsync and then removes the job only
 * when all the client writes after that, up to its end of input, is exactly `remove` and a newline
 * (compared byte for byte: a shell's read would drop a NUL, which this suite found). Every other answer, no
 * answer, and an answer after a failed transfer keep the job. Driven with the real rsync client and
 * OpenSSH, through an --rsh program that answers what each row says (test/support/hostile-helpers.ts).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';
import { readAudit, runCli, writeAnsweringRsh } from '../support/hostile-helpers.js';

const CANARY = `/tmp/mint-pwned-${randomBytes(6).toString('hex')}`;

const ANSWERS: ReadonlyArray<readonly [string, string]> = [
  ['nothing (end of input)', ''],
  ['remove without a newline', 'remove'],
  ['REMOVE', 'REMOVE\n'],
  ['remove with a trailing word', 'remove now\n'],
  ['remove with a trailing space', 'remove \n'],
  ['remove with a carriage return', 'remove\r\n'],
  ['a leading space', ' remove\n'],
  ['another line first', 'yes\nremove\n'],
  ['remove twice', 'remove\nremove\n'],
  ['more bytes after remove', 'remove\nx'],
  ['shell syntax after remove', `remove;touch ${CANARY}\n`],
  ['command substitution', `$(touch ${CANARY})\n`],
  ['a NUL inside', 'remo\0ve\n'],
  ['bytes outside ASCII', 'remov\u00e9\n'],
];

describe('take removes a job only on the client\'s exact answer', { timeout: 120_000 }, async () => {
  const dir = await freshDir();
  await writeFile(join(dir, 'p.sh'), '#!/bin/sh\necho result > result.txt\n');
  await chmod(join(dir, 'p.sh'), 0o755);
  const sandbox = useSandbox({ program: join(dir, 'p.sh') });

  /** A finished job, kept on the remote side. */
  const finishedJob = async (): Promise<string> => {
    const r = await runRemote({ host: sandbox().host, outputDir: await freshDir(), cleanup: 'never' });
    expect(r.exitCode).toBe(0);
    return r.jobId;
  };
  const take = async (job: string, answer: string, into?: string): Promise<{ code: number | null; stderr: string; out: string }> => {
    const work = await freshDir();
    const rsh = await writeAnsweringRsh(sandbox(), work);
    const log = join(work, 'gateway-stderr');
    await writeFile(log, '');
    const out = into ?? join(work, 'out');
    const r = await runCli('rsync', ['-rtE', `--rsh=${rsh}`, 'h::work/', `${out}/`], {
      env: { ...process.env, MGW_JOB: job, MGW_ANSWER: JSON.stringify(Buffer.from(answer, 'latin1').toString('latin1')), MGW_STDERR_LOG: log },
    });
    return { code: r.code, stderr: await readFile(log, 'utf8'), out };
  };
  const jobExists = (job: string): boolean => existsSync(join(sandbox().root, job));

  it('`remove` and a newline removes the job after a complete transfer (the control row)', async () => {
    const job = await finishedJob();
    const r = await take(job, 'remove\n');
    expect(r.code).toBe(0);
    expect(await readFile(join(r.out, 'result.txt'), 'utf8')).toBe('result\n');
    expect(r.stderr).toContain(`mint-gw: sent: job=${job} rsync=0\nmint-gw: removed: job=${job}\n`);
    expect(jobExists(job)).toBe(false);
  });

  it.each(ANSWERS)('answer %s: the results are sent, the job is kept', async (_name, answer) => {
    const job = await finishedJob();
    const r = await take(job, answer);
    expect(r.code).toBe(0);
    expect(await readFile(join(r.out, 'result.txt'), 'utf8')).toBe('result\n');
    expect(r.stderr).toContain(`mint-gw: sent: job=${job} rsync=0\n`);
    expect(r.stderr).not.toContain('removed');
    expect(jobExists(job)).toBe(true);
    expect(existsSync(CANARY)).toBe(false);
  });

  it('a transfer the client could not complete is never followed by a removal, whatever it answers', async () => {
    const job = await finishedJob();
    const out = join(await freshDir(), 'out');
    // A non-empty directory where result.txt must go: the receiver fails that file, the sender
    // still exits 0, and only the client knows; this client answers `remove` all the same, so
    // the gateway's part is just to wait for it. The real client (runRemote) does not answer.
    await mkdir(join(out, 'result.txt'), { recursive: true });
    await writeFile(join(out, 'result.txt', 'keep'), 'mine\n');
    const r = await take(job, '', out);
    expect(r.code).not.toBe(0);
    expect(jobExists(job)).toBe(true);
  });

  it('every take is one accepted audit line and one outcome line, answered or not', async () => {
    const audit = await readAudit(sandbox().root);
    const takes = audit.filter((l) => l.verb === 'take' && l.decision);
    expect(takes.length).toBe(ANSWERS.length + 2);
    for (const line of takes) {
      expect(line.decision).toBe('accepted');
      expect(audit.filter((l) => l.req === line.req && l.outcome).map((l) => l.outcome)).toEqual([expect.stringMatching(/^(ok|failed|signal:[A-Z]+)$/)]);
    }
  });
});
