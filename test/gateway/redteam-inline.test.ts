/**
 * Red-team findings on the inline verbs (putx), run straight against the gateway script under dash
 * and bash; each failed on the gateway as first reviewed (h/R) and pins its fix:
 *  1. putx's limits counted list entries, but one entry `a/a/.../a/x` makes a directory per part
 *     (mkdir -p): --max-job-files and --min-free-inodes were passed by thousands of inodes. Now
 *     the distinct directories of all paths count too.
 *  2. rm did not wait for a live putx: putx, still landing, recreated the job dir outside the lock
 *     (mkdir -p of absolute paths), its putx.PID marker gone with the old dir, so start ran the
 *     program meanwhile, and a symlink the program made was written through by putx's next file.
 *     Now putx lands relative to the work dir it entered: after an rm the rest lands in the trash.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GATEWAY_SCRIPT } from '../../src/site/install.js';
import { freshDir } from '../support/fixture.js';

const hex = (text: string): string => Buffer.from(text).toString('hex');

function stream(files: Array<[string, string]>): Buffer {
  const list = files.map(([path, body]) => `f ${Buffer.byteLength(body)} 0 ${hex(path)}\n`).join('');
  return Buffer.concat([Buffer.from(`mint-inline 1\n${list}data\n`), ...files.map(([, body]) => Buffer.from(body))]);
}

describe.each(['dash', 'bash'])('red team: putx under %s', async (shell) => {
  const dir = await freshDir();
  const root = join(dir, 'root');
  await mkdir(root, { mode: 0o700 });
  const outside = join(dir, 'outside');
  await mkdir(outside);
  const program = join(dir, 'prog.sh');
  // A site program that links to shared data from its work dir (as many do).
  await writeFile(program, `#!/bin/sh\nln -s '${outside}' link\nsleep 3\n`);
  await chmod(program, 0o755);
  const base = [GATEWAY_SCRIPT, '--root', root, '--program', program, '--client-timeout', '5'];
  const env = (verb: string, job: string) => ({ PATH: '/usr/bin:/bin', HOME: dir, SSH_ORIGINAL_COMMAND: `mint-gw ${verb} ${job}` });

  it('counts the directories an inline path makes against --max-job-files', () => {
    const job = randomUUID();
    const deep = `${Array(1500).fill('a').join('/')}/x`;
    const r = spawnSync(shell, [...base, '--max-job-files', '50'], { env: env('putx', job), input: stream([[deep, 'data']]), encoding: 'utf8' });
    // As reviewed: exit 0 and 1501 entries in a job capped at 50 files.
    expect(r.status, r.stderr).toBe(69);
    expect(existsSync(join(root, job))).toBe(false);
  });

  it('never lets a putx still landing outlive an rm of its job, nor write through a symlink', async () => {
    const job = randomUUID();
    const files: Array<[string, string]> = [];
    for (let i = 0; i < 999; i += 1) files.push([`f${String(i).padStart(4, '0')}`, 'x']);
    files.push(['link/pwned', 'PWNED\n']);
    const putx = spawn(shell, base, { env: env('putx', job), stdio: ['pipe', 'ignore', 'pipe'] });
    let putxErr = '';
    putx.stderr.on('data', (c: Buffer) => (putxErr += c.toString()));
    const putxDone = new Promise<number | null>((res) => putx.on('close', res));
    putx.stdin.end(stream(files));
    // Wait until putx is landing (the work dir has files), then rm and start the job.
    const work = join(root, job, job);
    for (let i = 0; i < 400; i += 1) {
      const n = await readdir(work).then((e) => e.length).catch(() => 0);
      if (n > 0) break;
      await new Promise((res) => setTimeout(res, 5));
    }
    const rm = spawnSync(shell, base, { env: env('rm', job), input: '', encoding: 'utf8' });
    const start = spawnSync(shell, base, { env: env('start', job), input: '', encoding: 'utf8' });
    const code = await putxDone;
    await new Promise((res) => setTimeout(res, 3500));
    // As reviewed: rm and start exit 0, putx exits 0 having landed the rest into a recreated job
    // dir, and `outside/pwned` holds PWNED.
    // A fix may refuse the rm (an upload is live) or end the putx; either way nothing lands outside.
    expect(existsSync(join(outside, 'pwned')), `rm ${rm.status} ${rm.stderr}; putx ${code} ${putxErr}; start ${start.status} ${start.stderr}`).toBe(false);
  }, 30_000);
});
