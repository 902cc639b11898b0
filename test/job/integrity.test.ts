/**
 * Verified bytes (issue 17, part 3), through the real sshd, gateway and rsync. The corruption is
 * injected where it would happen: for inputs, by a site-side process that changes the job's files
 * between the upload and the start (here, the test itself, on the `uploaded` event, before runRemote
 * sends the start); for outputs, after the local rsync wrote a file and before the check, by an
 * `rsync` on PATH that runs the real one and then flips a byte in what it wrote.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IntegrityError, listJobs, runRemote, type JobEvent } from '../../src/index.js';
import { manifestDigest } from '../../src/transfer/manifest.js';
import { freshDir, sha256, useSandbox } from '../support/fixture.js';
import { readAudit } from '../support/hostile-helpers.js';

const sha = (text: string | Buffer): string => createHash('sha256').update(text).digest('hex');

// Both ways of moving a job's files: small ones as inline streams (putx/takex), and rsync
// (MINT_SSH_EXEC_INLINE=0, as every job larger than an inline stream goes).
describe.each(['inline', 'rsync'] as const)('verified bytes (%s): inputs checked before the start, outputs after the download', { timeout: 120_000 }, async (mode) => {
  const saved = process.env.MINT_SSH_EXEC_INLINE;
  beforeAll(() => {
    process.env.MINT_SSH_EXEC_INLINE = mode === 'inline' ? '1' : '0';
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.MINT_SSH_EXEC_INLINE;
    else process.env.MINT_SSH_EXEC_INLINE = saved;
  });
  const take = mode === 'inline' ? 'takex' : 'take';
  const dir = await freshDir();
  const program = join(dir, 'p.sh');
  await writeFile(program, "#!/bin/sh\nprintf 'result of %s\\n' \"$1\" > result.txt\nmkdir -p out && printf 'deep\\n' > out/d.txt\n");
  await chmod(program, 0o755);
  // --hash-uploads: the big-input cases below check the hashes taken while the upload ran.
  const sandbox = useSandbox({ program, gateway: { hashUploads: true } });

  /** Inputs: a file, and a directory with a name holding a newline and Japanese. */
  const makeInputs = async (): Promise<string[]> => {
    const src = await freshDir();
    await writeFile(join(src, 'a.dat'), 'alpha\n');
    const tree = join(src, 'tree');
    await mkdir(join(tree, 'sub'), { recursive: true });
    await writeFile(join(tree, 'sub', 'x\n試料.txt'), 'xyz');
    await writeFile(join(tree, 'empty'), '');
    return [join(src, 'a.dat'), tree];
  };

  it('a clean job: the inputs verified (inputs= in the start\'s audit line), every output in result.manifest, the record beside the results', async () => {
    const out = await freshDir();
    const r = await runRemote({ host: sandbox().host, inputs: await makeInputs(), args: ['one'], outputDir: out });
    expect(r.exitCode).toBe(0);
    const paths = r.manifest.map((e) => e.path);
    expect(paths).toEqual(['a.dat', 'out/d.txt', 'result.txt', 'tree/empty', 'tree/sub/x\n試料.txt']);
    for (const e of r.manifest) {
      expect(e.sha256).toBe(await sha256(join(out, e.path)));
      expect(e.bytes).toBe((await readFile(join(out, e.path))).length);
    }
    const record = JSON.parse(await readFile(join(out, '.mint-job.json'), 'utf8'));
    expect(r.recordFile).toBe(join(out, '.mint-job.json'));
    expect(record.jobId).toBe(r.jobId);
    expect(record.inputs.files.map((f: { path: string }) => f.path)).toEqual(['a.dat', 'tree/empty', 'tree/sub/x\n試料.txt']);
    expect(record.outputs.sha256).toBe(manifestDigest(r.manifest));
    expect(record.gateway.version).toMatch(/^\d+\.\d+\.\d+$/);
    // The site's audit agrees: the start recorded the inputs' digest, the take's outcome the outputs',
    // and the head the client kept is the hash of the take's accepted line (the last it wrote
    // before serving).
    const lines = (await readAudit(sandbox().root)).filter((l) => l.raw.includes(` job=${r.jobId} `));
    // (A small job's inputs travel with its start, jobx: its start's acceptance carries inputs=.)
    const start = mode === 'inline' ? 'jobx' : 'runx';
    expect(lines.find((l) => l.verb === start && l.decision === 'accepted' && l.raw.includes(' inputs='))?.raw).toContain(` inputs=${record.inputs.sha256}`);
    const taken = lines.find((l) => l.verb === take && l.decision === 'accepted')!;
    expect(lines.find((l) => l.verb === take && l.outcome === 'ok')?.raw).toContain(` outputs=${record.outputs.sha256}`);
    expect(record.audit.headAtTake).toBe(sha(`${taken.raw}\n`));
  });

  it('names without a newline, CR or backslash take the gateway\'s openssl route (mgw_manifest_plain): spaces, a tab, Japanese, a leading dash, * and a control byte agree with the client', async () => {
    const src = await freshDir();
    const names = ['a b.txt', 'tab\there', '試料 データ.csv', '-dash', '*star', '.hidden', 'ctl\u0001x', 'big.bin'];
    for (const name of names) await writeFile(join(src, name), name === 'big.bin' ? Buffer.alloc(3_000_000, 7) : name);
    const r = await runRemote({ host: sandbox().host, inputs: [src], args: ['plain'], outputDir: await freshDir() });
    expect(r.exitCode).toBe(0);
    const start = (await readAudit(sandbox().root)).find((l) => l.raw.includes(` job=${r.jobId} `) && l.verb === 'runx' && l.decision === 'accepted');
    expect(start?.raw).toMatch(/ inputs=[0-9a-f]{64}/);
  });

  if (mode === 'rsync') it('a big input is hashed while it uploads (JOB/hashes.put), and the start still catches a byte flipped after the upload with its size and mtime kept', async () => {
    const src = await freshDir();
    const big = join(src, 'big.bin');
    writeFileSync(big, randomBytes(128 * 1024 * 1024));
    const bigSha = await sha256(big);
    let jobId = '';
    let followed = '';
    const seen = (e: JobEvent): void => {
      if (e.type === 'uploaded') followed = readFileSync(join(sandbox().root, jobId, 'hashes.put'), 'utf8');
    };
    jobId = randomUUID();
    const ok = await runRemote({ host: sandbox().host, inputs: [big], outputDir: await freshDir(), jobId, onEvent: seen });
    expect(ok.exitCode).toBe(0);
    // INODE SIZE CTIME SHA256 PATH: the one big file, with the bytes the client has.
    expect(followed).toMatch(new RegExp(`^\\d+ ${128 * 1024 * 1024} \\d+\\.\\d+ ${bigSha} \\./big\\.bin\\n$`));

    let second = '';
    const flip = (e: JobEvent): void => {
      if (e.type !== 'uploaded') return;
      const file = join(sandbox().root, second, second, 'big.bin');
      expect(readFileSync(join(sandbox().root, second, 'hashes.put'), 'utf8')).toContain(bigSha);
      const { mtime } = statSync(file);
      const fd = openSync(file, 'r+');
      writeSync(fd, Buffer.from([0x5a ^ readFileSync(file).subarray(1000, 1001)[0]!]), 0, 1, 1000);
      closeSync(fd);
      utimesSync(file, mtime, mtime);
    };
    second = randomUUID();
    const error = await runRemote({ host: sandbox().host, inputs: [big], outputDir: await freshDir(), jobId: second, onEvent: flip }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).differences.map((d) => `${d.problem} ${d.path}`)).toEqual(['changed big.bin']);

    // The start does take the upload's hash for an unchanged file (it does not read it again): a
    // hash edited in JOB/hashes.put (the gateway's own file, beside the work dir) is what it sees.
    let third = '';
    const edit = (e: JobEvent): void => {
      if (e.type !== 'uploaded') return;
      const file = join(sandbox().root, third, 'hashes.put');
      writeFileSync(file, readFileSync(file, 'utf8').replace(bigSha, '0'.repeat(64)));
    };
    third = randomUUID();
    const edited = await runRemote({ host: sandbox().host, inputs: [big], outputDir: await freshDir(), jobId: third, onEvent: edit }).catch((e: unknown) => e);
    expect(edited).toBeInstanceOf(IntegrityError);
    expect((edited as IntegrityError).differences).toEqual([expect.objectContaining({ problem: 'changed', path: 'big.bin', actual: expect.objectContaining({ sha256: '0'.repeat(64) }) })]);
  });

  // With inline streams a small job's inputs come with its start (jobx): no moment between the two
  // where the client waits. The gateway's check is the same code (mgw_check_inputs), and a jobx
  // whose inputs differ from its manifest is refused in test/gateway/inline.test.ts.
  if (mode === 'rsync') it('an input changed, one removed and one added on the site between upload and start: the start is refused, the program never runs, each file named', async () => {
    const out = await freshDir();
    let jobId = '';
    const onEvent = (e: JobEvent): void => {
      if (e.type !== 'uploaded') return;
      // A hostile site-side process, synchronously before runRemote sends the start.
      const work = join(sandbox().root, jobId, jobId);
      writeFileSync(join(work, 'a.dat'), 'ALPHA\n');
      rmSync(join(work, 'tree', 'empty'));
      writeFileSync(join(work, 'planted.sh'), 'echo pwned\n');
    };
    const inputs = await makeInputs();
    jobId = '4f0e0d0c-0b0a-4908-8706-0504030201aa';
    const error = await runRemote({ host: sandbox().host, inputs, outputDir: out, jobId, onEvent }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    const integrity = error as IntegrityError;
    expect(integrity.code).toBe('INTEGRITY_FAILED');
    expect(integrity.side).toBe('inputs');
    expect(integrity.differences.map((d) => `${d.problem} ${d.path}`).sort()).toEqual(['changed a.dat', 'extra planted.sh', 'missing tree/empty']);
    expect(integrity.message).toMatch(/"a\.dat" \(6 bytes sha256 .* on the site, 6 bytes sha256 .* as sent\)/);
    // Refused before acceptance: one audit line, and no program line; the job never started.
    const lines = (await readAudit(sandbox().root)).filter((l) => l.raw.includes(` job=${jobId} `) && l.verb !== 'put');
    expect(lines.map((l) => `${l.verb} ${l.decision}`)).toEqual(['runx refused:E_INTEGRITY']);
    expect(existsSync(join(sandbox().root, jobId, 'started'))).toBe(false);
    expect(existsSync(join(sandbox().root, jobId, 'remote_program_exec.log'))).toBe(false);
  });

  /** An `rsync` first on PATH that runs the real one, then, for a download, flips a byte of result.txt: every time, or the first time only. */
  const corruptingRsync = async (once: boolean): Promise<{ path: string; count: () => number }> => {
    const bin = await freshDir();
    const marks = join(bin, 'marks');
    await writeFile(
      join(bin, 'rsync'),
      `#!/bin/sh
/usr/bin/rsync "$@"
rc=$?
for last in "$@"; do :; done
case " $* " in
  *" mint::"*)
    if [ -f "$last/result.txt" ] && { [ ${once ? 1 : 0} = 0 ] || [ ! -e '${marks}' ]; }; then
      printf X | dd of="$last/result.txt" bs=1 seek=0 conv=notrunc 2>/dev/null
      echo x >> '${marks}'
    fi ;;
esac
exit $rc
`,
    );
    await chmod(join(bin, 'rsync'), 0o755);
    return { path: bin, count: () => (existsSync(marks) ? readFileSync(marks, 'utf8').split('\n').length - 1 : 0) };
  };

  const withPath = async <T>(bin: string, fn: () => Promise<T>): Promise<T> => {
    const saved = process.env.PATH;
    process.env.PATH = `${bin}:${saved}`;
    try {
      return await fn();
    } finally {
      process.env.PATH = saved;
    }
  };

  // The client's own rsync corrupts what it lands; an inline stream is hashed from the disk after
  // landing the same way (transfer/inline.ts hashLanded), unit-tested in test/transfer/inline.test.ts.
  if (mode === 'rsync') it('an output corrupted after it landed: fetched once more, then right', async () => {
    const out = await freshDir();
    const rsync = await corruptingRsync(true);
    const events: JobEvent[] = [];
    const r = await withPath(rsync.path, () => runRemote({ host: sandbox().host, args: ['two'], outputDir: out, onEvent: (e) => events.push(e) }));
    expect(rsync.count()).toBe(1);
    expect(r.exitCode).toBe(0);
    expect(await readFile(join(out, 'result.txt'), 'utf8')).toBe('result of two\n');
    expect(r.manifest.find((e) => e.path === 'result.txt')?.sha256).toBe(sha('result of two\n'));
    const retry = events.find((e) => e.type === 'retrying' && e.step === 'download');
    expect(retry && 'error' in retry ? String(retry.error.message) : '').toMatch(/1 file\(s\) differ from the gateway's manifest: "result\.txt"/);
    // The take answered `remove` only the second time: the job is gone now.
    expect(r.cleanedUp).toBe(true);
    expect((await listJobs(sandbox().host)).map((j) => j.jobId)).not.toContain(r.jobId);
  });

  if (mode === 'rsync') it('an output corrupted on every fetch: IntegrityError naming the file, and the job stays on the site', async () => {
    const out = await freshDir();
    const rsync = await corruptingRsync(false);
    const error = await withPath(rsync.path, () => runRemote({ host: sandbox().host, args: ['three'], outputDir: out })).catch((e: unknown) => e);
    expect(rsync.count()).toBe(2);
    expect(error).toBeInstanceOf(IntegrityError);
    const integrity = error as IntegrityError;
    expect(integrity.side).toBe('outputs');
    expect(integrity.differences.map((d) => `${d.problem} ${d.path}`)).toEqual(['changed result.txt']);
    expect(integrity.message).toMatch(/differ from what the gateway served, twice: "result\.txt"/);
    expect(integrity.jobId).toBeDefined();
    expect((await listJobs(sandbox().host)).map((j) => j.jobId)).toContain(integrity.jobId);
  });
});
