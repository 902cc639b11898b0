import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mkdir, readFile, symlink, writeFile, chmod, stat } from 'node:fs/promises';
import { TransferError } from '../../src/errors.js';
import { join } from 'node:path';
import { attach, listJobs, runRemote } from '../../src/index.js';
import { freshDir, sandboxKinds, useSandbox } from '../support/fixture.js';

const PROGRAM = `#!/bin/sh
# test program: echoes its inputs' names, fails when asked, writes nested outputs
echo "args: $*"
ls -1 | sort
case "$1" in
  fail) echo "failing on purpose" >&2; exit 3 ;;
  nested) mkdir -p out/a/b && echo deep > out/a/b/c.txt && echo top > out/top.txt ;;
  hash) for f in *.bin; do sha256sum "$f"; done > hashes.txt ;;
  ownlog) echo "not the log" > remote_program_exec.log ;;
esac
exit 0
`;

describe.each(sandboxKinds())('runRemote against a real sshd and the real gateway (%s)', async (kind) => {
  const programDir = await freshDir();
  const programPath = join(programDir, 'prog.sh');
  await writeFile(programPath, PROGRAM);
  await chmod(programPath, 0o755);
  const sandbox = useSandbox({ program: programPath }, kind);
  const remoteJobs = async (): Promise<string[]> => (await listJobs(sandbox().host)).map((j) => j.jobId);

  it('refuses an output dir that cannot be made before anything is sent (typed InputError, no job on the site)', async () => {
    const work = await freshDir();
    await writeFile(join(work, 'afile'), 'x');
    await writeFile(join(work, 'a.dat'), 'alpha\n');
    const jobId = randomUUID();
    await expect(runRemote({ host: sandbox().host, jobId, inputs: [join(work, 'a.dat')], outputDir: join(work, 'afile', 'sub') })).rejects.toMatchObject({
      code: 'INPUT_INVALID',
      message: expect.stringMatching(/output dir .* cannot be made \(ENOTDIR\)/),
    });
    expect(await remoteJobs()).not.toContain(jobId);
  });

  it('a job id names one job: reusing it with other arguments is refused (typed), never the old log with exit 0', async () => {
    const jobId = randomUUID();
    const first = await runRemote({ host: sandbox().host, jobId, args: ['one'], outputDir: await freshDir(), cleanup: 'never' });
    expect(first.exitCode).toBe(0);
    await expect(runRemote({ host: sandbox().host, jobId, args: ['two'], outputDir: await freshDir() })).rejects.toMatchObject({
      code: 'GATEWAY_REFUSED',
      gatewayCode: 'E_STATE',
      message: expect.stringMatching(/started with another program or other arguments/),
    });
    // The same request again is a retry (as after a lost reply): the job's own result.
    const again = await runRemote({ host: sandbox().host, jobId, args: ['one'], outputDir: await freshDir() });
    expect(again.log).toBe(first.log);
  });

  it('runs a trivial job end to end and returns outputs, log and timings', async () => {
    const work = await freshDir();
    await writeFile(join(work, 'a.dat'), 'alpha\n');
    await writeFile(join(work, 'b.dat'), 'beta\n');
    const out = join(work, 'out');
    const r = await runRemote({ host: sandbox().host, inputs: [join(work, 'a.dat'), join(work, 'b.dat')], outputDir: out, args: ['x=1'] });
    expect(r.exitCode).toBe(0);
    expect(r.failed).toBe(false);
    expect(r.state).toBe('exited');
    expect(r.log).toContain('args: x=1');
    expect(r.log).toContain('a.dat\nb.dat');
    expect(await readFile(join(out, 'a.dat'), 'utf8')).toBe('alpha\n');
    expect(await readFile(join(out, 'remote_program_exec.log'), 'utf8')).toBe(r.log);
    expect(r.files.sort()).toEqual(['a.dat', 'b.dat']);
    expect(r.cleanedUp).toBe(true);
    expect(await remoteJobs()).not.toContain(r.jobId);
    expect(r.timings.totalMs).toBeGreaterThan(0);
  });

  it('carries names with spaces and unicode, and dereferences a symlinked input', async () => {
    const work = await freshDir();
    const odd = join(work, 'input with spaces ü 計算.dat');
    await writeFile(odd, 'odd\n');
    await mkdir(join(work, 'real'));
    await writeFile(join(work, 'real', 'target.dat'), 'through a link\n');
    await symlink(join(work, 'real', 'target.dat'), join(work, 'port_link.dat'));
    const out = join(work, 'out');
    const r = await runRemote({ host: sandbox().host, inputs: [odd, join(work, 'port_link.dat')], outputDir: out });
    expect(r.exitCode).toBe(0);
    expect(r.log).toContain('input with spaces ü 計算.dat');
    expect(await readFile(join(out, 'input with spaces ü 計算.dat'), 'utf8')).toBe('odd\n');
    const back = join(out, 'port_link.dat');
    expect((await stat(back)).isFile()).toBe(true);
    expect(await readFile(back, 'utf8')).toBe('through a link\n');
  });

  it('returns a failing program as a result with its log, and keeps the remote dir on failure', async () => {
    const work = await freshDir();
    const r = await runRemote({ host: sandbox().host, inputs: [], outputDir: work, args: ['fail'] });
    expect(r.exitCode).toBe(3);
    expect(r.failed).toBe(true);
    expect(r.log).toContain('failing on purpose');
    expect(r.cleanedUp).toBe(false);
    expect(await listJobs(sandbox().host)).toContainEqual(expect.objectContaining({ jobId: r.jobId, state: 'exited', exitCode: 3 }));
  });

  it('throws RemoteJobError with the log when throwOnFailure is set', async () => {
    const work = await freshDir();
    await expect(runRemote({ host: sandbox().host, outputDir: work, args: ['fail'], throwOnFailure: true, cleanup: 'always' })).rejects.toMatchObject({
      code: 'REMOTE_FAILED',
      message: expect.stringContaining('failing on purpose'),
    });
  });

  it('brings back subdirectories the program wrote', async () => {
    const work = await freshDir();
    const r = await runRemote({ host: sandbox().host, outputDir: work, args: ['nested'] });
    expect(r.exitCode).toBe(0);
    expect(await readFile(join(work, 'out', 'a', 'b', 'c.txt'), 'utf8')).toBe('deep\n');
    expect(r.files.sort()).toEqual(['out/a/b/c.txt', 'out/top.txt']);
  });

  it('moves a 200 MB input intact', async () => {
    const work = await freshDir();
    const big = join(work, 'big.bin');
    const block = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
    const chunks = Array.from({ length: 200 }, (_, i) => {
      const b = Buffer.from(block);
      b.writeUInt32LE(i, 0);
      return b;
    });
    await writeFile(big, Buffer.concat(chunks));
    const out = join(work, 'out');
    const r = await runRemote({ host: sandbox().host, inputs: [big], outputDir: out, args: ['hash'] });
    expect(r.exitCode).toBe(0);
    const { createHash } = await import('node:crypto');
    const local = createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
    expect(await readFile(join(out, 'hashes.txt'), 'utf8')).toBe(`${local}  big.bin\n`);
    expect((await stat(join(out, 'big.bin'))).size).toBe(200 * 1024 * 1024);
  }, 120_000);

  it('keeps the remote job when the MInt side cannot write a result, and attach then finishes it', async () => {
    const work = await freshDir();
    await writeFile(join(work, 'a.dat'), 'alpha\n');
    const out = join(work, 'out');
    // A non-empty directory where the result file must go: rsync's receiver cannot replace it.
    await mkdir(join(out, 'a.dat'), { recursive: true });
    await writeFile(join(out, 'a.dat', 'keep'), 'mine\n');
    const jobId = crypto.randomUUID();
    const error = await runRemote({ host: sandbox().host, inputs: [join(work, 'a.dat')], outputDir: out, jobId, cleanup: 'always' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransferError);
    expect((error as TransferError).step).toBe('download');
    // The gateway removes a job only after rsync's sender has heard every file arrive.
    expect(await remoteJobs()).toContain(jobId);
    const again = await attach({ host: sandbox().host, jobId, outputDir: join(work, 'elsewhere'), cleanup: 'always' });
    expect(await readFile(join(work, 'elsewhere', 'a.dat'), 'utf8')).toBe('alpha\n');
    expect(again.cleanedUp).toBe(true);
    expect(await remoteJobs()).not.toContain(jobId);
  });

  it("keeps its own log when the program writes a file of the log's name", async () => {
    const out = join(await freshDir(), 'out');
    const r = await runRemote({ host: sandbox().host, outputDir: out, args: ['ownlog'] });
    expect(r.files).toContain('remote_program_exec.log');
    expect(await readFile(join(out, 'remote_program_exec.log'), 'utf8')).toBe(r.log);
    expect(r.log).toContain('args: ownlog');
  });

  it('leaves no job directory behind after successful jobs', async () => {
    // Only the failing job above (kept by cleanup: on-success) may remain.
    const left = await listJobs(sandbox().host);
    expect(left.map((j) => [j.state, j.exitCode])).toEqual([['exited', 3]]);
  });
});
