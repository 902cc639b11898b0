/**
 * `mint-ssh-exec sandbox --pull` (issue 18): a real hub and a real agent on this machine, a
 * `mode: pull` host profile that probe and run accept, nothing left behind when it stops, and a
 * loud stop (exit 208) when the hub or the agent dies under it.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/mint-ssh-exec.js';
import { captureIo, runMain } from '../support/cli-io.js';
import { freshDir } from '../support/fixture.js';

const ROOT = join(import.meta.dirname, '..', '..');

function processesMatching(pattern: string): string {
  try {
    return execFileSync('pgrep', ['-af', pattern], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

describe('mint-ssh-exec sandbox --pull', () => {
  it('serves a pull host that probe and run accept, then removes everything on stop', async () => {
    expect(existsSync(join(ROOT, 'dist', 'bundle', 'load.cjs')), 'build first: npm run build').toBe(true);
    const { io, out } = captureIo();
    const controller = new AbortController();
    const running = main(['sandbox', '--pull'], io, controller.signal);
    const deadline = Date.now() + 30_000;
    while (!out().stdout.includes('press Ctrl-C')) {
      if (Date.now() > deadline) throw new Error(`sandbox did not come up: ${out().stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const text = out().stdout;
    expect(text).toMatch(/^pull sandbox running: hub https:\/\/127\.0\.0\.1:\d+ \(pid \d+\), agent of site sandbox \(pid \d+\)$/m);
    expect(text).toContain('mode: pull');
    const config = /--config (\S+)/.exec(text)![1]!;
    const dir = config.replace(/\/hosts\.yaml$/, '');
    expect(processesMatching(`${dir}/hub`)).not.toBe('');
    const probe = await runMain(main, ['probe', 'sandbox', '--config', config]);
    expect(probe.code, probe.stdout).toBe(0);
    expect(probe.stdout).toMatch(/\[ ok \] agent +connected/);
    const work = await freshDir();
    await writeFile(join(work, 'in.dat'), 'one\ntwo\n');
    const run = await runMain(main, ['run', 'sandbox', join(work, 'in.dat'), '-o', join(work, 'out'), '--config', config]);
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(join(work, 'out', 'results', 'line_counts.txt'))).toBe(true);
    controller.abort();
    expect(await running).toBe(0);
    expect(existsSync(dir)).toBe(false);
    expect(processesMatching(dir)).toBe('');
  }, 60_000);

  it('when its agent dies (killed), exits 208 at once, saying what died and how, and removes its files', async () => {
    const parent = await freshDir();
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'mint-ssh-exec.mjs'), 'sandbox', '--pull', '--write-config', join(parent, 'hosts.yaml')], {
      env: { ...process.env, TMPDIR: parent },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((r) => child.on('close', (code) => r({ code, at: Date.now() })));
    try {
      const deadline = Date.now() + 30_000;
      while (!stdout.includes('press Ctrl-C')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`sandbox did not come up: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const pid = Number(/agent of site sandbox \(pid (\d+)\)/.exec(stdout)![1]);
      const killedAt = Date.now();
      process.kill(pid, 'SIGKILL');
      const { code, at } = await exited;
      expect(code).toBe(208);
      expect(at - killedAt).toBeLessThan(5000);
      expect(stderr).toMatch(new RegExp(`the agent \\(pid ${pid}\\) died: killed by SIGKILL`));
      expect(readdirSync(parent)).toEqual([]);
      expect(processesMatching(`${parent}/`)).toBe('');
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);

  it('--pull with --docker is a usage error; a --program that cannot be read, or a hub port in use, is a sandbox error and leaves no files', async () => {
    const both = await runMain(main, ['sandbox', '--pull', '--docker']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--pull and --docker do not go together');
    const parent = await freshDir();
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = parent;
    try {
      const r = await runMain(main, ['sandbox', '--pull', '--program', join(parent, 'no-such-program.sh')], process.env);
      expect(r.code).toBe(208);
      expect(r.stderr).toContain('no-such-program.sh');
      expect(readdirSync(parent)).toEqual([]);
      // A hub port another process holds: the hub's own typed refusal, no files left.
      const busy = net.createServer();
      await new Promise<void>((done) => busy.listen(0, '127.0.0.1', () => done()));
      const port = (busy.address() as net.AddressInfo).port;
      try {
        const taken = await runMain(main, ['sandbox', '--pull', '--port', String(port)], process.env);
        expect(taken.code).toBe(208);
        expect(taken.stderr).toContain(`the hub cannot listen on 127.0.0.1:${port}: EADDRINUSE`);
        expect(taken.stderr).not.toContain('internal error');
        expect(readdirSync(parent)).toEqual([]);
      } finally {
        busy.close();
      }
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });
});
