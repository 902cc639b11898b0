/**
 * --export against a hand-made rsync peer. With `--export 'results/*'`, `mint-gw get|take JOB`
 * must let only files matching the allow-list leave the external computer, whatever the client
 * sends; and a one-off merge rule the client sends must not make the server read a file outside
 * what it serves. The gateway used to pass the allow-list to rsync's sender as argv filter rules
 * (`--include=results/* --include=*\/ --exclude=*`); the sender appends the filter rules the
 * receiving client sends over the protocol to that same list, and a bare `!` rule clears the whole
 * list, so a client sending `!` got the entire work dir.
 *
 * The stock rsync client never sends `!` (it clears its own list locally), so the client runs with
 * `--exclude=MARKER` through an --rsh relay (test/support/filter-rewrite.ts) that replaces that
 * rule's frame in the multiplexed filter list with `!`. The relay reports whether it found and
 * rewrote the frame, so these rows cannot pass without the rewrite having happened. Control rows
 * send the same stream unchanged.
 *
 * The job's work dir holds results/a.txt (exportable), scratch.txt and secret/key.txt (not). Exactly
 * results/a.txt and its directory arrive (the gateway serves a staging tree of hard links holding
 * only exportable files, with directories only on the way to one). rsync's exit status is not
 * asserted for rewritten rows (a gateway may accept or refuse the stream), only what arrived.
 * Afterwards the job's own files keep their modes (the staged copies are hard links) and no staging
 * tree is left, also when the client is killed in the middle of a take.
 */
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';
import { GATEWAY_RSYNCS, gatewayRsync, runCli, sshOptions } from '../support/hostile-helpers.js';
import { readRewriteReport, writeFilterRewritingRsh } from '../support/filter-rewrite.js';

const SECRET = `mint-secret-${randomBytes(8).toString('hex')}`;
const PROGRAM = `#!/bin/sh
# Leaves one exportable file and two that must stay on the external computer.
mkdir -p results secret
echo a >results/a.txt
chmod 444 results/a.txt
echo ${SECRET} >scratch.txt
echo ${SECRET} >secret/key.txt
exit 0
`;

/** `d path` / `f path size`, sorted. */
async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(dir, r));
      if (st.isDirectory()) {
        out.push(`d ${r}`);
        await walk(r);
      } else out.push(`${st.isFile() ? 'f' : '?'} ${r} ${st.size}`);
    }
  };
  await walk('');
  return out.sort();
}

describe('--export results/*: a client that clears the filter list over the protocol', { timeout: 60_000 }, async () => {
  const outside = await freshDir();
  await writeFile(join(outside, 'p.sh'), PROGRAM);
  await chmod(join(outside, 'p.sh'), 0o755);
  const sandbox = useSandbox({ program: join(outside, 'p.sh'), gateway: { export: 'results/*' } });

  let job: string | undefined;
  /** One finished job, kept (take rows send no `remove`, so it stays). */
  const finishedJob = async (): Promise<string> => {
    if (!job) {
      const r = await runRemote({ host: sandbox().host, outputDir: await freshDir(), cleanup: 'never' });
      expect(r.exitCode).toBe(0);
      job = r.jobId;
      expect(await listTree(join(sandbox().root, job, job))).toEqual([
        'd results',
        'd secret',
        'f results/a.txt 2',
        `f scratch.txt ${SECRET.length + 1}`,
        `f secret/key.txt ${SECRET.length + 1}`,
      ]);
    }
    return job;
  };

  const download = async (verb: 'get' | 'take', rewrite: boolean, rewriteTo = '!') => {
    const id = await finishedJob();
    const dir = await freshDir();
    const rsh = await writeFilterRewritingRsh(sandbox(), dir);
    const marker = `mint-marker-${randomBytes(6).toString('hex')}`;
    const log = join(dir, 'rewrite.json');
    const dest = join(dir, 'out');
    await mkdir(dest);
    // rsync's daemon mode: the client names the gateway's module (h::work/).
    const run = await runCli('rsync', ['-rt', `--exclude=${marker}`, `--rsh=${rsh}`, 'h::work/', `${dest}/`], {
      env: { ...process.env, MGW_VERB: verb, MGW_JOB: id, MGW_MARKER: marker, MGW_REWRITE: rewrite ? '1' : '0', MGW_REWRITE_TO: rewriteTo, MGW_REWRITE_LOG: log },
      timeoutMs: 30_000,
    });
    const report = await readRewriteReport(log);
    const tree = await listTree(dest);
    let leaked = false;
    for (const entry of tree) if (entry.startsWith('f ') && (await readFile(join(dest, entry.split(' ')[1]!), 'utf8')).includes(SECRET)) leaked = true;
    if ((d => d.includes(SECRET))(run.stdout + run.stderr)) leaked = true;
    return { run, report, marker, tree, leaked, dest };
  };

  /** Exactly results/a.txt and its directory arrived, and no secret bytes. */
  const expectOnlyExported = async (d: Awaited<ReturnType<typeof download>>): Promise<void> => {
    const context = `rsync exit ${d.run.code}\nstdout: ${d.run.stdout}\nstderr: ${d.run.stderr}`;
    expect({ tree: d.tree, leaked: d.leaked, timedOut: d.run.timedOut }, context).toEqual({
      tree: ['d results', 'f results/a.txt 2'],
      leaked: false,
      timedOut: false,
    });
    expect(await readFile(join(d.dest, 'results', 'a.txt'), 'utf8')).toBe('a\n');
  };

  it.each(['get', 'take'] as const)('control: %s with the client\'s own rule unchanged sends only results/a.txt', async (verb) => {
    const d = await download(verb, false);
    expect(d.report, d.run.stderr).toMatchObject({ found: true, rewritten: false, error: null, rules: [`- ${d.marker}`] });
    expect(d.run.code, d.run.stderr).toBe(0);
    await expectOnlyExported(d);
  });

  it.each(['get', 'take'] as const)('%s with the rule rewritten to `!` (clear the list) still sends only results/a.txt', async (verb) => {
    const d = await download(verb, true);
    // The relay found the client's marker rule in the first MSG_DATA frame and sent `!` instead.
    expect(d.report, d.run.stderr).toMatchObject({ found: true, rewritten: true, error: null, rules: [`- ${d.marker}`] });
    expect(d.report.frameAfter).toContain(Buffer.from([1, 0, 0, 0, 0x21]).toString('hex'));
    expect(d.run.stderr).not.toContain('filter-rewrite relay: FAILED');
    await expectOnlyExported(d);
  });

  // One-off merge rules, which a stock client reads itself and never sends: sent by hand, they make
  // the server open the file they name. Outside the module (the staging tree) nothing is opened:
  // rsync's daemon mode cuts the name down to a path inside it (exclude.c parse_merge_name with
  // sanitize_paths), where it does not exist, and a merge file that cannot be opened ends the
  // transfer (XFLG_FATAL_ERRORS). Read, `names-above` (one line: a.txt) would make results/a.txt
  // go missing from a transfer that succeeds; `secret-above` and scratch.txt (not exportable) hold
  // the secret, which a line that fails to parse used to echo back (rsync < 3.5.0).
  const above = (name: string): string => join(sandbox().dir, name);
  describe.each(GATEWAY_RSYNCS)('gateway rsync: %s', (_label, which) => {
    beforeAll(async () => {
      if (which) await sandbox().reinstall({ export: 'results/*', rsync: await gatewayRsync(which, outside) });
    });
    afterAll(async () => {
      if (which) await sandbox().reinstall({ export: 'results/*' });
    });
    it.each([
      ['an absolute exclude-only merge of a file above the job', () => `merge,- ${above('names-above')}`],
      ['an absolute merge of a secret above the job', () => `merge ${above('secret-above')}`],
      ['a `.` merge with ../ from the work dir', () => `. ../../../${'secret-above'}`],
      ['a merge of the work dir\'s scratch.txt, which --export keeps', () => 'merge scratch.txt'],
    ])('get with the rule rewritten to %s: the file is not read, nothing is sent', async (_name, rule) => {
      await writeFile(above('names-above'), 'a.txt\n');
      await writeFile(above('secret-above'), `${SECRET}\n`);
      const d = await download('get', true, rule());
      expect(d.report, d.run.stderr).toMatchObject({ found: true, rewritten: true, error: null, rules: [`- ${d.marker}`] });
      expect({ tree: d.tree, leaked: d.leaked }, d.run.stderr).toEqual({ tree: [], leaked: false });
      // The sender's exit 11 (file IO), which the client sees as its connection closed: 12.
      expect([11, 12], d.run.stderr).toContain(d.run.code);
      // The name it tried is inside the module (the staging tree), not the one the client sent.
      expect(d.run.stderr).toMatch(/failed to open (ex|in)clude file (\S*\/export\.\d+\.\d+\/\S+|secret-above|scratch\.txt)[: ]/);
    });
  });

  it('the job keeps its own files\' modes and no staging tree, also after a client killed in the middle of a take', async () => {
    const id = await finishedJob();
    const jobDir = join(sandbox().root, id);
    // A take whose client dies before the transfer ends: the gateway's `sent` line then meets a
    // closed pipe (SIGPIPE), which must not skip the staging tree's removal.
    const ssh = ['ssh', ...sshOptions(sandbox()), '-p', String(sandbox().port), `${sandbox().user}@127.0.0.1`, `mint-gw take ${id} .iLsfxCIvu`];
    const quoted = ssh.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    for (let i = 0; i < 3; i += 1) await runCli('sh', ['-c', `sleep 3 | timeout -s KILL 1 ${quoted}`], { timeoutMs: 20_000 });
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      if (!(await readdir(jobDir)).some((e) => e.startsWith('export.'))) break;
    }
    expect((await readdir(jobDir)).filter((e) => e.startsWith('export.'))).toEqual([]);
    expect((await lstat(join(jobDir, id, 'results', 'a.txt'))).mode & 0o777).toBe(0o444);
    expect(await listTree(join(jobDir, id))).toContain('f results/a.txt 2');
  });
});
