/**
 * putx and takex, the inline streams of small jobs (mgw_verb_putx), through the real sshd and
 * gateway, from a hostile client: every malformed list, path and length is refused before a byte
 * lands, no path leads out of the work dir, an inline upload never runs beside another upload, the
 * site's limits hold, and takex serves exactly what take would (the export allow-list, the
 * manifest, the `remove` answer) or refuses what it cannot carry (E_INLINE).
 */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveHost } from '../../src/config/resolve-host.js';
import { connect, type Connection } from '../../src/connection/connect.js';
import { collect, execCollect, type ExecResult } from '../../src/connection/exec.js';
import { runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';
import { readAudit } from '../support/hostile-helpers.js';

const hex = (s: string | Buffer): string => Buffer.from(s).toString('hex');

/** An inline stream: its list lines, then its data. */
function stream(lines: string[], data: Buffer | string = ''): Buffer {
  return Buffer.concat([Buffer.from(['mint-inline 1', ...lines, 'data', ''].join('\n')), Buffer.from(data)]);
}

describe('putx and takex: small jobs as inline streams, from a hostile client', { timeout: 120_000 }, async () => {
  const dir = await freshDir();
  const program = join(dir, 'p.sh');
  // `link` leaves a symlink among the results; `big` more than an inline stream carries; `slow` runs a while.
  await writeFile(
    program,
    `#!/bin/sh
case "$1" in
  link) ln -s /etc/passwd out.lnk ;;
  big) head -c 1100000 /dev/zero > big.bin ;;
  slow) sleep 5 ;;
esac
files=$(find . -type f | sort); printf '%s\\n' "$files" > listing.txt
printf 'ok\\n' > result.txt
`,
  );
  await chmod(program, 0o755);
  const sandbox = useSandbox({ program });
  let connection: Connection;
  beforeAll(async () => {
    connection = await connect(await resolveHost(sandbox().host));
  });
  afterAll(() => connection?.close());

  const putx = (job: string, body: Buffer): Promise<ExecResult> => execCollect(connection, `mint-gw putx ${job}`, { stdin: body });
  const work = (job: string): string => join(sandbox().root, job, job);
  const refusal = (r: ExecResult): string => `${r.exitCode} ${r.stderr.trim()}`;

  it('lands files and directories as rsync -rLE would (modes from the umask, u+x for an executable), and the program sees them', async () => {
    const job = randomUUID();
    const r = await putx(job, stream([`f 3 0 ${hex('a.txt')}`, `d ${hex('d')}`, `f 2 1 ${hex('d/x y\n試.sh')}`, `d ${hex('empty')}`], 'abcxy'));
    expect(refusal(r)).toBe(`0 mint-gw: put: job=${job} entries=4 bytes=5`);
    expect(await readFile(join(work(job), 'a.txt'), 'utf8')).toBe('abc');
    expect(await readFile(join(work(job), 'd', 'x y\n試.sh'), 'utf8')).toBe('xy');
    expect(existsSync(join(work(job), 'empty'))).toBe(true);
    const { stat } = await import('node:fs/promises');
    expect((await stat(join(work(job), 'a.txt'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(work(job), 'd', 'x y\n試.sh'))).mode & 0o777).toBe(0o700);
    // A second putx replaces the first's inputs whole.
    expect((await putx(job, stream([`f 1 0 ${hex('b.txt')}`], 'b'))).exitCode).toBe(0);
    expect((await readdir(work(job))).sort()).toEqual(['b.txt']);
  });

  // Each row: a hostile stream, and the one line the gateway refuses it with. Nothing may land.
  const rows: Array<[string, Buffer, string]> = [
    ['no header', Buffer.from(`f 1 0 ${hex('a')}\ndata\nx`), "E_USAGE: an inline upload begins with the line 'mint-inline 1'"],
    ['no data line', Buffer.from(`mint-inline 1\nf 1 0 ${hex('a')}\n`), "E_USAGE: an inline upload's list ends with the line 'data'"],
    ['../ escape', stream([`f 1 0 ${hex('../../../escape.txt')}`], 'x'), "E_USAGE: an inline path is relative, without empty, '.' or '..' parts"],
    ['.. in the middle', stream([`f 1 0 ${hex('a/../../b')}`], 'x'), "E_USAGE: an inline path is relative, without empty, '.' or '..' parts"],
    ['absolute path', stream([`f 1 0 ${hex('/tmp/abs.txt')}`], 'x'), "E_USAGE: an inline path is relative, without empty, '.' or '..' parts"],
    ['empty component', stream([`f 1 0 ${hex('a//b')}`], 'x'), "E_USAGE: an inline path is relative, without empty, '.' or '..' parts"],
    ['dot', stream([`d ${hex('.')}`]), "E_USAGE: an inline path is relative, without empty, '.' or '..' parts"],
    ['trailing slash', stream([`d ${hex('a/')}`]), "E_USAGE: an inline path is relative, without empty, '.' or '..' parts"],
    ['NUL in a path', stream([`f 1 0 ${hex(Buffer.from('a\0/../../x'))}`], 'x'), 'E_USAGE: an inline path may not hold a NUL byte'],
    ['uppercase hex', stream([`f 1 0 ${hex('z').toUpperCase()}`], 'x'), 'E_USAGE: an inline path is its bytes in lowercase hex'],
    ['odd hex', stream([`f 1 0 616`], 'x'), 'E_USAGE: an inline path is 1-4096 whole bytes of hex'],
    ['a shell word as path', stream([`f 1 0 $(touch /tmp/pwned)`], 'x'), 'E_USAGE: an inline path is its bytes in lowercase hex'],
    ['unknown kind', stream([`l ${hex('a')} ${hex('/etc')}`]), "E_USAGE: an inline upload's lines are 'd HEXPATH', 'f SIZE X HEXPATH' and 'data'"],
    ['bad executable flag', stream([`f 1 7 ${hex('a')}`], 'x'), "E_USAGE: an inline upload's lines are 'd HEXPATH', 'f SIZE X HEXPATH' and 'data'"],
    ['size with a sign', stream([`f -1 0 ${hex('a')}`], 'x'), "E_USAGE: an inline upload's lines are 'd HEXPATH', 'f SIZE X HEXPATH' and 'data'"],
    ['size with leading zeros', stream([`f 01 0 ${hex('a')}`], 'x'), 'E_USAGE: an inline file\'s size is a decimal number under 1048576'],
    ['fewer bytes than listed', stream([`f 5 0 ${hex('a')}`], 'xy'), 'E_USAGE: the inline upload is 30 bytes where its list says 33 (cut short, or more than it lists)'],
    ['more bytes than listed', stream([`f 1 0 ${hex('a')}`], 'xyz'), 'E_USAGE: the inline upload is 31 bytes where its list says 29 (cut short, or more than it lists)'],
    ['over the inline size', stream([`f 1048577 0 ${hex('a')}`], Buffer.alloc(1048577)), 'E_USAGE: an inline upload holds at most 1048576 bytes (larger inputs go by put)'],
    ['one path twice', stream([`f 1 0 ${hex('a')}`, `f 1 0 ${hex('a')}`], 'xy'), 'E_USAGE: the inline upload names one path twice'],
    ['a file, then a path through it', stream([`f 1 0 ${hex('a')}`, `f 1 0 ${hex('a/b')}`], 'xy'), 'E_USAGE: cannot make a directory of the upload (a file on its path?)'],
    ['a directory, then a file of its name', stream([`d ${hex('a')}`, `f 1 0 ${hex('a')}`], 'x'), 'E_USAGE: the inline upload names one path twice'],
    // The shell's read drops a NUL, which made the list a byte shorter than it was (red team).
    ['a NUL in a list line', Buffer.concat([Buffer.from(`mint-inline 1\nf 2 0 ${hex('a')}`), Buffer.from([0]), Buffer.from('\ndata\nx')]), "E_USAGE: an inline upload's list holds a byte its lines may not (a NUL?)"],
    ['a part over 255 bytes', stream([`f 1 0 ${hex(`d/${'n'.repeat(256)}`)}`], 'x'), "E_USAGE: an inline path's part is longer than 255 bytes"],
  ];
  it.each(rows)('refuses %s', async (_name, body, message) => {
    const job = randomUUID();
    const r = await putx(job, body);
    expect(refusal(r)).toBe(`64 mint-gw: error: ${message}`);
    expect(r.stdout.length).toBe(0);
    expect(existsSync('/tmp/pwned')).toBe(false);
    expect(existsSync(join(sandbox().root, '..', 'escape.txt'))).toBe(false);
    expect(existsSync('/tmp/abs.txt')).toBe(false);
    // Refused before a file landed: the spool is gone, and the work dir holds nothing written by
    // this request beyond what a valid prefix of the list made (the two path-collision rows).
    const left = existsSync(work(job)) ? await readdir(work(job)) : [];
    expect(left.filter((n) => n !== 'a')).toEqual([]);
    expect((await readdir(join(sandbox().root, job))).filter((n) => n.startsWith('spool.') || n.startsWith('putx.'))).toEqual([]);
  });

  it('sweeps the spool a killed putx left, before it spools its own', async () => {
    const job = randomUUID();
    expect((await putx(job, stream([]))).exitCode).toBe(0);
    await writeFile(join(sandbox().root, job, 'spool.999999.1'), Buffer.alloc(4096));
    expect((await putx(job, stream([`f 1 0 ${hex('a')}`], 'a'))).exitCode).toBe(0);
    expect((await readdir(join(sandbox().root, job))).filter((n) => n.startsWith('spool.'))).toEqual([]);
  });

  it('more entries than an inline upload lists is refused', async () => {
    const lines = Array.from({ length: 1001 }, (_, i) => `d ${hex(`d${i}`)}`);
    expect(refusal(await putx(randomUUID(), stream(lines)))).toBe('64 mint-gw: error: E_USAGE: an inline upload lists at most 1000 entries');
  });

  it('refuses a started job, and never runs beside another upload (either way round)', async () => {
    const started = await runRemote({ host: sandbox().host, outputDir: await freshDir(), cleanup: 'never' });
    expect(refusal(await putx(started.jobId, stream([])))).toBe(`68 mint-gw: error: E_STATE: job ${started.jobId} has started; its inputs can no longer change`);

    // A putx whose client holds its stream open: a put (rsync) and another putx into the job are
    // refused meanwhile, and so is the start.
    const job = randomUUID();
    const holding = await connection.exec(`mint-gw putx ${job}`);
    const held = collect(connection, holding);
    holding.write(`mint-inline 1\nf 1 0 ${hex('a')}\n`);
    const deadline = Date.now() + 10_000;
    while (!(existsSync(join(sandbox().root, job)) && (await readdir(join(sandbox().root, job))).some((n) => /^putx\.\d+$/.test(n)))) {
      if (Date.now() > deadline) throw new Error('the holding putx never began');
      await new Promise((r) => setTimeout(r, 20));
    }
    const second = await putx(job, stream([`f 1 0 ${hex('b')}`], 'b'));
    expect(refusal(second)).toMatch(new RegExp(`^68 mint-gw: error: E_STATE: an upload into job ${job} is running \\(gateway pid \\d+\\); try again when it has ended$`));
    const put = await execCollect(connection, `mint-gw put ${job} .iLsfxCIvu`, { stdin: '' });
    expect(refusal(put)).toMatch(new RegExp(`^68 mint-gw: error: E_STATE: an upload into job ${job} is running`));
    const start = await execCollect(connection, `mint-gw start ${job}`);
    expect(refusal(start)).toMatch(new RegExp(`^68 mint-gw: error: E_STATE: an upload into job ${job} is still running`));
    holding.end('data\nz');
    expect((await held).exitCode).toBe(0);
    expect(await readFile(join(work(job), 'a'), 'utf8')).toBe('z');
  });

  it('holds the site\'s limits: over --max-job-files or --max-job-mb is E_LIMIT and the job is removed', async () => {
    await sandbox().reinstall({ maxJobFiles: 2, maxJobMb: 1 });
    // sshd reads the forced command when the key logs in: a new connection gets the new options.
    const limited = await connect(await resolveHost(sandbox().host));
    const putx = (job: string, body: Buffer): Promise<ExecResult> => execCollect(limited, `mint-gw putx ${job}`, { stdin: body });
    try {
      const many = randomUUID();
      const r = await putx(many, stream([`f 1 0 ${hex('a')}`, `f 1 0 ${hex('b')}`, `f 1 0 ${hex('c')}`], 'abc'));
      expect(refusal(r)).toBe(`69 mint-gw: error: E_LIMIT: job ${many} would pass the site's cap of 2 files per job; the upload was refused and job ${many} removed`);
      expect(existsSync(join(sandbox().root, many))).toBe(false);
      const fits = randomUUID();
      expect((await putx(fits, stream([`f 1 0 ${hex('a')}`], 'a'))).exitCode).toBe(0);
    } finally {
      limited.close();
      await sandbox().reinstall({});
    }
  });

  const manifestOf = (files: Array<[string, string]>): string => {
    const text = files.map(([p, c]) => `${hex(p)} ${Buffer.byteLength(c)} ${createHash('sha256').update(c).digest('hex')}\n`).sort().join('');
    return createHash('sha256').update(text).digest('hex');
  };
  /** jobx: the request (its length on the command line), then the inputs. */
  const jobx = (job: string, request: string | Buffer, inputs: Buffer, length = Buffer.byteLength(request)): Promise<ExecResult> =>
    execCollect(connection, `mint-gw jobx ${job} ${length}`, { stdin: Buffer.concat([Buffer.from(request), inputs]) });

  it('jobx: inputs and start in one request, after its greeting; inputs other than its manifest says are refused (E_INTEGRITY) and nothing runs', async () => {
    const job = randomUUID();
    const ok = await jobx(job, `manifest ${hex(manifestOf([['in.txt', 'hi']]))}\n`, stream([`f 2 0 ${hex('in.txt')}`], 'hi'));
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout.toString()).toBe('mint-job 1\n');
    expect(ok.stderr).toMatch(new RegExp(`mint-gw: put: job=${job} entries=1 bytes=2\nmint-gw: started: job=${job} state=running pid=\\d+\nmint-gw: status: job=${job} state=exited exit=0`));
    expect(await readFile(join(work(job), 'listing.txt'), 'utf8')).toBe('./in.txt\n');

    const bad = randomUUID();
    const refused = await jobx(bad, `manifest ${hex(manifestOf([['in.txt', 'hi']]))}\n`, stream([`f 2 0 ${hex('in.txt')}`], 'HI'));
    expect(refused.exitCode).toBe(71);
    expect(refused.stderr).toMatch(/mint-gw: error: E_INTEGRITY: the files of job \S+ are not the ones the client sent/);
    expect(existsSync(join(sandbox().root, bad, 'started'))).toBe(false);
    expect(existsSync(join(work(bad), 'listing.txt'))).toBe(false);
  });

  const jobxRows: Array<[string, string, Buffer, string]> = [
    ['no length', '', Buffer.alloc(0), "'jobx' takes JOB LENGTH (the request, LENGTH bytes, then the inputs come on stdin)"],
    ['a length with a leading zero', '012', Buffer.from('manifest 00\n'), "a jobx request's length is a decimal byte count under 1 MiB"],
    ['a length over 1 MiB', '2000000', Buffer.alloc(0), "a jobx request's length is a decimal byte count under 1 MiB"],
    ['a request cut short', '100', Buffer.from('arg 61\n'), 'the request on stdin is shorter than its stated 100 bytes'],
    ['no manifest', '', Buffer.from(`arg ${hex('x')}\n`), 'a jobx request carries the manifest of its inputs'],
    ['a request line of another kind', '', Buffer.from(`inline ${hex('x')}\n`), "request lines are 'program HEX', 'arg HEX' or 'env HEX'"],
    ['a NUL in the request', '', Buffer.from('arg 61\0\n'), 'the request on stdin did not come whole within 600 s (or held a control byte)'],
  ];
  it.each(jobxRows)('jobx refuses %s before anything is accepted', async (name, length, request, message) => {
    const job = randomUUID();
    const command = name === 'no length' ? `mint-gw jobx ${job}` : `mint-gw jobx ${job} ${length === '' ? request.length : length}`;
    const r = await execCollect(connection, command, { stdin: Buffer.concat([request, stream([])]) });
    expect(refusal(r)).toBe(`64 mint-gw: error: E_USAGE: ${message}`);
    expect(existsSync(join(sandbox().root, job))).toBe(false);
    // (Refused before its job id was read, the line of 'no length' names no job.)
    const lines = (await readAudit(sandbox().root)).filter((l) => l.raw.includes(` job=${name === 'no length' ? '-' : job} `) && l.verb === 'jobx');
    expect(lines.at(-1)?.decision).toBe('refused:E_USAGE');
  });

  it('audits jobx and takex like put, run and take (accepted, then the outcome; takex with the outputs\' digest)', async () => {
    const src = await freshDir();
    await writeFile(join(src, 'in.txt'), 'in\n');
    const out = await freshDir();
    const r = await runRemote({ host: sandbox().host, inputs: [join(src, 'in.txt')], outputDir: out });
    expect(await readFile(join(out, 'listing.txt'), 'utf8')).toBe('./in.txt\n');
    const lines = (await readAudit(sandbox().root)).filter((l) => l.raw.includes(` job=${r.jobId} `));
    // The inputs came with the start (jobx): one acceptance, before the upload, with the digest the
    // inputs must match.
    expect(lines.map((l) => `${l.verb} ${l.decision || l.outcome}`)).toEqual([
      'jobx accepted',
      'program ok',
      'jobx ok',
      'takex accepted',
      'takex ok',
    ]);
    expect(lines[0]!.raw).toMatch(/ decision=accepted inputs=[0-9a-f]{64}$/);
    expect(lines.at(-1)!.raw).toMatch(/ outputs=[0-9a-f]{64}$/);
    expect(r.cleanedUp).toBe(true);
    expect(existsSync(join(sandbox().root, r.jobId))).toBe(false);
  });

  it('takex serves only what the export allow-list lets out, as take does', async () => {
    await sandbox().reinstall({ export: 'result.txt' });
    try {
      const out = await freshDir();
      const r = await runRemote({ host: sandbox().host, outputDir: out });
      expect(r.manifest.map((e) => e.path)).toEqual(['result.txt']);
      expect((await readdir(out)).filter((n) => !n.startsWith('.')).sort()).toEqual(['remote_program_exec.log', 'result.txt']);
      const verbs = (await readAudit(sandbox().root)).filter((l) => l.raw.includes(` job=${r.jobId} `)).map((l) => l.verb);
      expect(verbs).toContain('takex');
      expect(verbs).not.toContain('take');
    } finally {
      await sandbox().reinstall({});
    }
  });

  it('results with a symlink, or over the inline size, are refused by takex (E_INLINE) and come by rsync', async () => {
    for (const arg of ['link', 'big']) {
      const out = await freshDir();
      const r = await runRemote({ host: sandbox().host, args: [arg], outputDir: out });
      expect(r.exitCode).toBe(0);
      const lines = (await readAudit(sandbox().root)).filter((l) => l.raw.includes(` job=${r.jobId} `));
      expect(lines.map((l) => `${l.verb} ${l.decision || l.outcome}`).slice(-4)).toEqual(['takex accepted', 'takex error:E_INLINE', 'take accepted', 'take ok']);
      if (arg === 'link') expect(r.skipped).toEqual(['out.lnk -> /etc/passwd']);
      else expect((await readFile(join(out, 'big.bin'))).length).toBe(1100000);
    }
  });

  it('takex refuses a running job, and keeps the job unless the client answers `remove`', async () => {
    const job = randomUUID();
    expect((await putx(job, stream([]))).exitCode).toBe(0);
    expect((await execCollect(connection, `mint-gw start ${job} slow`)).exitCode).toBe(0);
    const running = await execCollect(connection, `mint-gw takex ${job}`, { stdin: '' });
    expect(refusal(running)).toBe(`68 mint-gw: error: E_STATE: job ${job} is still running`);
    await execCollect(connection, `mint-gw logs ${job} 0`);
    // No answer (end of input at once): served, kept.
    const kept = await execCollect(connection, `mint-gw takex ${job}`, { stdin: '' });
    expect(kept.exitCode).toBe(0);
    expect(kept.stdout.toString('latin1')).toMatch(/^mint-inline 1\n(?:[df] \d+ \d+ [\d.]+ [0-9a-f]+\n)+data\n/);
    expect(existsSync(join(sandbox().root, job))).toBe(true);
    const gone = await execCollect(connection, `mint-gw takex ${job}`, { stdin: 'remove\n' });
    expect(gone.stderr).toContain(`mint-gw: removed: job=${job}`);
    expect(existsSync(join(sandbox().root, job))).toBe(false);
  });
});
