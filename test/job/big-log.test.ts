/**
 * Issue 14.1: a remote log larger than V8's longest string (~512 MiB) crashed `run` with "Cannot
 * create a string longer than 0x1fffffe8 characters" (exit 220, 1.5 GB RSS) after the job had
 * succeeded and been removed remotely; a 200 MiB log cost 820 MB RSS. The log now streams to
 * outputDir as it arrives. Slow (600 MiB through sshd, the gateway and ssh2): its own file.
 */
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, open, readdir, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOG_TAIL_BYTES, attach, listJobs, runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';

const MIB = 1024 * 1024;
const LOG_MIB = 600;

// $1 MiB (default 600) of numbered 1 KiB lines ("N " padded with x), then a line that names the end.
const PROGRAM = `#!/bin/sh
awk -v n=$(( \${1:-${LOG_MIB}} * 1024 )) 'BEGIN { pad = sprintf("%1014s", ""); gsub(/ /, "x", pad); for (i = 1; i <= n; i++) printf "%08d %s\\n", i, substr(pad, 1, 1014) }'
echo "the end: 計算 done"
`;

describe('a log larger than memory (600 MiB), a log larger than the disk', async () => {
  const programDir = await freshDir();
  const programPath = join(programDir, 'flood.sh');
  await writeFile(programPath, PROGRAM);
  await chmod(programPath, 0o755);
  const sandbox = useSandbox({ program: programPath });

  it('`run` streams it to the output dir with bounded memory; result.log keeps the last 1 MiB; the job goes only after', { timeout: 300_000 }, async () => {
    const work = await freshDir();
    const config = join(work, 'hosts.yaml');
    await writeFile(config, sandbox().profileYaml());
    const out = join(work, 'out');
    // Peak RSS as the process itself measured it, printed on its way out.
    const hook = `data:text/javascript,process.on('exit',()=>process.stderr.write('maxrss_kb='+process.resourceUsage().maxRSS+'\\n'))`;
    const bin = resolve('bin/mint-ssh-exec.mjs');
    const child = spawn(process.execPath, ['--import', hook, bin, 'run', 'sandbox', '-o', out, '--json', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code, stderr.slice(-2000)).toBe(0);

    const maxRssMb = Number(/maxrss_kb=(\d+)/.exec(stderr)?.[1]) / 1024;
    console.log(`600 MiB log: peak RSS ${maxRssMb.toFixed(0)} MB`);
    expect(maxRssMb).toBeLessThan(300);

    const result = JSON.parse(stdout) as { exitCode: number; log: string; logFile: string; logBytes: number; cleanedUp: boolean; jobId: string };
    const expectedBytes = LOG_MIB * MIB + Buffer.byteLength('the end: 計算 done\n');
    expect(result.exitCode).toBe(0);
    expect(result.logFile).toBe(join(out, 'remote_program_exec.log'));
    expect(result.logBytes).toBe(expectedBytes);
    expect((await stat(result.logFile)).size).toBe(expectedBytes);
    // The tail: at most LOG_TAIL_BYTES, ending with the log's end, starting on a whole line here.
    expect(Buffer.byteLength(result.log)).toBeLessThanOrEqual(LOG_TAIL_BYTES);
    expect(Buffer.byteLength(result.log)).toBeGreaterThan(LOG_TAIL_BYTES - 1100);
    expect(result.log.endsWith('the end: 計算 done\n')).toBe(true);
    // The file is the whole log in order: its first and last lines, and a line in the middle.
    const file = await open(result.logFile);
    try {
      const at = async (position: number, length: number): Promise<string> => {
        const buffer = Buffer.alloc(length);
        await file.read(buffer, 0, length, position);
        return buffer.toString('utf8');
      };
      expect(await at(0, 9)).toBe('00000001 ');
      expect(await at(300 * MIB, 9)).toBe(`${String(300 * 1024 + 1).padStart(8, '0')} `);
      expect(await at((LOG_MIB * MIB) - 1024, 9)).toBe(`${String(LOG_MIB * 1024).padStart(8, '0')} `);
    } finally {
      await file.close();
    }
    // No part file left behind, and the job was removed only after the log was whole here.
    expect((await readdir(out)).sort()).toEqual(['.mint-job.json', 'remote_program_exec.log']);
    expect(result.cleanedUp).toBe(true);
    expect((await listJobs(sandbox().host)).map((j) => j.jobId)).not.toContain(result.jobId);
  });

  it('a log the output dir has no room for stops the following, not the job: typed error, nothing lost, attach gets it whole', async (context) => {
    if (process.getuid?.() !== 0) {
      context.skip('not root: a full output dir needs mount(2) for a small tmpfs');
      return;
    }
    const full = join(await freshDir(), 'small');
    await mkdir(full);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', full]);
    try {
      const jobId = '7d1c0e2a-5b3f-4c6d-8e9f-0a1b2c3d4e5f';
      await expect(runRemote({ host: sandbox().host, jobId, args: ['8'], outputDir: full })).rejects.toMatchObject({
        code: 'TRANSFER_FAILED',
        step: 'run',
        message: expect.stringMatching(/cannot write the log into .* \(ENOSPC\); the job stays on the site/),
      });
      // No part file fills the dir; the job (and its log) is still on the site.
      expect(await readdir(full)).toEqual([]);
      expect((await listJobs(sandbox().host)).map((j) => j.jobId)).toContain(jobId);
      const roomy = await freshDir();
      const result = await attach({ host: sandbox().host, jobId, outputDir: roomy });
      expect(result.logBytes).toBe(8 * MIB + Buffer.byteLength('the end: 計算 done\n'));
      expect((await stat(join(roomy, 'remote_program_exec.log'))).size).toBe(result.logBytes);
      expect(result.cleanedUp).toBe(true);
    } finally {
      execFileSync('umount', [full]);
    }
  });
});
