/**
 * The sandbox as a feature: `mint-ssh-exec sandbox` keeps a host up and prints a profile that works
 * with probe and run; `npm run demo` runs a real job and leaves nothing behind, Ctrl-C included.
 */
import { describe, expect, it } from 'vitest';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../../src/cli/mint-ssh-exec.js';
import { captureIo, runMain } from '../support/cli-io.js';
import { freshDir } from '../support/fixture.js';
import { startSandbox } from '../../src/sandbox/sandbox.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** The demo's own temp dirs, read from what it printed (other test files run sandboxes too). */
function demoDirs(stdout: string): string[] {
  const dirs = [...stdout.matchAll(/\/[\w/.-]*\/(mint-sandbox-\w+|mint-pull-sandbox-\w+|mint-demo-\w+)/g)].map((m) => m[0]);
  return [...new Set(dirs)];
}

/** Processes whose command line holds `pattern` (pgrep never lists itself). */
function processesMatching(pattern: string): string {
  try {
    return execFileSync('pgrep', ['-af', pattern], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

describe('mint-ssh-exec sandbox', () => {
  it('--port on a port already in use fails loudly (non-zero) and leaves no files behind (no private key)', async () => {
    // Another SSH server holds the port: its banner must not pass for our sshd's.
    const busy = net.createServer((socket) => socket.end('SSH-2.0-OpenSSH_9.2p1 other\r\n'));
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as net.AddressInfo).port;
    const parent = await freshDir();
    // The sandbox makes its dir under os.tmpdir(), which reads TMPDIR: here, a dir of this test's own.
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = parent;
    try {
      const r = await runMain(main, ['sandbox', '--port', String(port), '--write-config', join(parent, 'hosts.yaml')], process.env);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`port ${port} on 127\\.0\\.0\\.1 is not free`));
      expect(readdirSync(parent)).toEqual([]);
      // A listener that never speaks (not an SSH server at all): the same.
      const silent = net.createServer(() => undefined);
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
      const silentPort = (silent.address() as net.AddressInfo).port;
      const quiet = await runMain(main, ['sandbox', '--port', String(silentPort)], process.env);
      silent.close();
      expect(quiet.code).toBe(208);
      expect(quiet.stderr).toMatch(new RegExp(`port ${silentPort} on 127\\.0\\.0\\.1 is not free`));
      expect(readdirSync(parent)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      busy.close();
    }
  });

  it('when its sshd dies after start (killed), exits non-zero at once, saying what died and how, and removes its files', async () => {
    expect(existsSync(join(ROOT, 'dist', 'cli', 'mint-ssh-exec.js')), 'build first: npm run build').toBe(true);
    const parent = await freshDir();
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'mint-ssh-exec.mjs'), 'sandbox', '--write-config', join(parent, 'hosts.yaml')], {
      env: { ...process.env, TMPDIR: parent },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((r) => child.on('close', (code) => r({ code, at: Date.now() })));
    try {
      const deadline = Date.now() + 20_000;
      while (!stdout.includes('press Ctrl-C')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`sandbox did not come up: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const dir = /job root: (\S+)\/jobs/.exec(stdout)![1]!;
      const pid = Number(readFileSync(join(dir, 'sshd.pid'), 'utf8').trim());
      const killedAt = Date.now();
      process.kill(pid, 'SIGKILL');
      const { code, at } = await exited;
      expect(code).toBe(208);
      expect(at - killedAt).toBeLessThan(1500);
      expect(stderr).toMatch(new RegExp(`sshd \\(pid ${pid}\\) died: killed by SIGKILL`));
      expect(existsSync(dir)).toBe(false);
      expect(readdirSync(parent)).toEqual([]);
      // The operator can find it too: the ready text names the pid sshd wrote to its PidFile.
      expect(stdout).toMatch(new RegExp(`sshd: +pid ${pid}\\b`));
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('a --program that cannot be read fails as a sandbox error (not a stack trace) and leaves no files', async () => {
    const parent = await freshDir();
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = parent;
    try {
      const r = await runMain(main, ['sandbox', '--program', join(parent, 'no-such-program.sh')], process.env);
      expect(r.code).toBe(208);
      expect(r.stderr).toContain('no-such-program.sh');
      expect(r.stderr).not.toContain('internal error');
      expect(readdirSync(parent)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });

  it('an sshd that fails at start (a config line it rejects) is a SandboxError, and the dir is gone', async () => {
    const parent = await freshDir();
    await expect(startSandbox({ baseDir: parent, sshdConfig: ['NoSuchSshdOption yes'] })).rejects.toMatchObject({ code: 'SANDBOX_FAILED', message: expect.stringMatching(/sshd exited at start/) });
    expect(readdirSync(parent)).toEqual([]);
  });

  it('serves a host that probe and run accept, then removes everything on stop', async () => {
    const { io, out } = captureIo();
    const controller = new AbortController();
    const running = main(['sandbox'], io, controller.signal);
    const deadline = Date.now() + 20_000;
    while (!out().stdout.includes('press Ctrl-C')) {
      if (Date.now() > deadline) throw new Error(`sandbox did not come up: ${out().stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const config = /--config (\S+)/.exec(out().stdout)![1]!;
    const dir = config.replace(/\/hosts\.yaml$/, '');
    expect(processesMatching(`${dir}/sshd_config`)).not.toBe('');
    const probe = await runMain(main, ['probe', 'sandbox', '--config', config]);
    expect(probe.code).toBe(0);
    const work = await freshDir();
    await writeFile(join(work, 'in.dat'), 'one\ntwo\n');
    const run = await runMain(main, ['run', 'sandbox', join(work, 'in.dat'), '-o', join(work, 'out'), '--config', config]);
    expect(run.code).toBe(0);
    expect(existsSync(join(work, 'out', 'results', 'line_counts.txt'))).toBe(true);
    controller.abort();
    expect(await running).toBe(0);
    expect(existsSync(dir)).toBe(false);
    expect(processesMatching(`${dir}/sshd_config`)).toBe('');
  });
});

describe('npm run demo (examples/demo.mjs on the built package)', () => {
  it('runs a real job by both methods (SSH, then pull through a hub) and leaves no process or temp dir behind', async () => {
    expect(existsSync(join(ROOT, 'dist', 'index.js')), 'build first: npm run build').toBe(true);
    const out = await freshDir();
    const r = await runNode(['examples/demo.mjs'], out);
    expect(r.code).toBe(0);
    expect(r.stdout.match(/succeeded \(exit 0\)/g)?.length).toBe(2);
    expect(r.stdout).toContain('over 1 SSH connection');
    expect(r.stdout).toContain('through the hub');
    expect(r.stdout).toContain('results/line_counts.txt');
    expect(existsSync(join(out, 'demo-output', 'results', 'line_counts.txt'))).toBe(true);
    expect(existsSync(join(out, 'demo-output-pull', 'results', 'line_counts.txt'))).toBe(true);
    const dirs = demoDirs(r.stdout);
    // The SSH sandbox's, the pull sandbox's, the demo's own.
    expect(dirs.length).toBe(3);
    for (const dir of dirs) {
      expect(existsSync(dir)).toBe(false);
      expect(processesMatching(dir)).toBe('');
    }
  });

  it('on Ctrl-C cancels the job, stops the sandbox and removes its files', async () => {
    const dir = await freshDir();
    const slow = join(dir, 'slow.sh');
    await writeFile(slow, '#!/bin/sh\necho working\nsleep 60\n');
    await chmod(slow, 0o755);
    let sent = false;
    const r = await runNode(['examples/demo.mjs', '--program', slow], dir, (text, child) => {
      if (text.includes('working') && !sent) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    expect(r.code).toBe(130);
    expect(r.stderr).toContain('interrupted');
    const dirs = demoDirs(r.stdout);
    expect(dirs.length).toBe(2);
    for (const d of dirs) {
      expect(existsSync(d)).toBe(false);
      expect(processesMatching(d)).toBe('');
    }
    expect(processesMatching(slow)).toBe(''); // pgrep -f on the program's path: no job process survived
  });
});

function runNode(
  args: string[],
  cwd: string,
  onOutput?: (text: string, child: ReturnType<typeof spawn>) => void,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args.map((a) => (a.startsWith('examples/') ? join(ROOT, a) : a)), { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onOutput?.(stdout, child);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
