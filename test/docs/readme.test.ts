/**
 * The README's shell blocks marked `<!-- README-TEST: name -->` run verbatim here, so the docs
 * cannot drift from the code. The tour runs in a copy-free way: in the repository itself.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { siteHome } from '../support/site-home.js';

const ROOT = join(import.meta.dirname, '..', '..');

async function block(name: string, lang = 'sh'): Promise<string> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const m = new RegExp(`<!-- README-TEST: ${name} -->\\n\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!m) throw new Error(`README has no block marked ${name}`);
  return m[1]!;
}

function bash(script: string, cwd: string, env: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-e', '-c', script], { cwd, env, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('README', () => {
  it('the tour runs verbatim and leaves nothing running', async () => {
    const script = await block('tour');
    await rm(join(ROOT, 'tour-results'), { recursive: true, force: true });
    try {
      const r = bash(script, ROOT, process.env);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('verdict: READY');
      expect(r.stdout).toMatch(/^2 conditions\.dat$/m);
      expect(existsSync(join(ROOT, 'sandbox-hosts.yaml'))).toBe(false);
    } finally {
      await rm(join(ROOT, 'tour-results'), { recursive: true, force: true });
    }
  }, 300_000);

  it('the install lines run verbatim: npm pack, a global install of the tarball, the CLI on the PATH', async () => {
    const prefix = await mkdtemp(join(tmpdir(), 'mint-global-'));
    const version = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version as string;
    const tarball = join(ROOT, `mint-ssh-exec-${version}.tgz`);
    try {
      // npm's global prefix, moved to a temp dir: `npm install -g` then installs there.
      const r = bash(await block('install'), ROOT, { ...process.env, npm_config_prefix: prefix, npm_config_prefer_offline: 'true', PATH: `${join(prefix, 'bin')}:${process.env.PATH ?? ''}` });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.stdout.trim().split('\n').at(-1)).toBe(version);
      expect(existsSync(join(prefix, 'bin', 'mint-ssh-exec'))).toBe(true);
    } finally {
      await rm(tarball, { force: true });
      await rm(prefix, { recursive: true, force: true });
    }
  }, 180_000);

  it('the pull-mode tour runs verbatim and leaves nothing running', async () => {
    const script = await block('pull-tour');
    await rm(join(ROOT, 'pull-results'), { recursive: true, force: true });
    try {
      // As after the tour's `export PATH=...`.
      const r = bash(script, ROOT, { ...process.env, PATH: `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}` });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('verdict: READY');
      expect(r.stdout).toMatch(/\[ ok \] agent +connected/);
      expect(await readFile(join(ROOT, 'pull-results', 'results', 'line_counts.txt'), 'utf8')).toBe('2 structure.dat\n');
      expect(existsSync(join(ROOT, 'pull-hosts.yaml'))).toBe(false);
    } finally {
      await rm(join(ROOT, 'pull-results'), { recursive: true, force: true });
    }
  }, 120_000);

  it("the pull-mode set-up runs verbatim: hub init, add-site, the hub, the agent with the gateway's options, the profile, a job", async () => {
    // The blocks name the hub's port: it must be free here.
    await new Promise<void>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', () => reject(new Error('port 8443 is taken on this machine: the README pull-mode blocks listen there')));
      s.listen(8443, '0.0.0.0', () => s.close(() => resolve()));
    });
    const home = await mkdtemp(join(tmpdir(), 'mint-pull-readme-'));
    try {
      await mkdir(join(home, 'bin'));
      await copyFile(join(ROOT, 'examples', 'execute_remote-side_program_ssh.sh'), join(home, 'bin', 'execute_remote-side_program_ssh.sh'));
      await writeFile(join(home, 'in.dat'), 'one\ntwo\nthree\n');
      // The profile as written, but for a hub reached here by a name its certificate holds.
      const profile = await block('pull-profile', 'yaml');
      expect(profile).toContain('hub: https://hub.example.org:8443');
      await writeFile(join(home, 'hosts.yaml'), profile.replace('hub.example.org', 'localhost'));
      const script = [
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
        await block('pull-hub'),
        'cp ~/mint-hub/ca.pem hub-ca.pem   # what the site receives from the hub, with siteA.token',
        await block('pull-agent'),
        'for i in $(seq 1 100); do mint-ssh-exec probe siteA --config hosts.yaml >/dev/null && break; sleep 0.2; done',
        'mint-ssh-exec probe siteA --config hosts.yaml',
        'mint-ssh-exec run siteA in.dat -o out --config hosts.yaml',
        'kill %1 %2 && wait',
      ].join('\n');
      const r = bash(script, home, { ...process.env, HOME: home, HUB: 'localhost', PATH: `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}` });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain('verdict: READY');
      expect(await readFile(join(home, 'out', 'results', 'line_counts.txt'), 'utf8')).toBe('3 in.dat\n');
      // The token was printed once into the file, and the hub stores only its hash.
      expect((await readFile(join(home, 'siteA.token'), 'utf8')).trim()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  }, 120_000);

  it('the site set-up runs verbatim in a fresh home', async () => {
    const { home } = await siteHome();
    // As after `npm install -g mint-ssh-exec`: the CLIs on the PATH.
    const r = bash(await block('site'), home, { ...process.env, HOME: home, SHELL: '/bin/sh', PATH: `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}` });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('added the mint-gateway line');
    expect(r.stdout).toContain('verdict: the gateway holds');
    expect(await readFile(join(home, '.ssh', 'authorized_keys'), 'utf8')).toMatch(/^restrict,command="/);
  }, 120_000);
});
