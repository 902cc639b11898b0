/**
 * The README's shell blocks marked `<!-- README-TEST: name -->` run verbatim here, so the docs
 * cannot drift from the code. The tour runs in a copy-free way: in the repository itself.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { siteHome } from '../support/site-home.js';

const ROOT = join(import.meta.dirname, '..', '..');

async function block(name: string): Promise<string> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const m = new RegExp(`<!-- README-TEST: ${name} -->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\``).exec(readme);
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
