/** examples/ works: the TypeScript module wrapper compiles against the public types and runs a job. */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseProfiles } from '../../src/config/load-profiles.js';
import { freshDir, useSandbox } from '../support/fixture.js';

const ROOT = join(import.meta.dirname, '..', '..');

describe('examples/', () => {
  const sandbox = useSandbox();

  it('mint-module.ts compiles and runs a job like MInt program B (outputs here, exit status = the program\'s)', async () => {
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'examples', 'tsconfig.json')], { cwd: ROOT });
    const work = await freshDir();
    await writeFile(join(work, 'structure.dat'), 'Fe\nFe\n');
    const hosts = join(work, 'hosts.yaml');
    await writeFile(hosts, sandbox().profileYaml());
    const r = spawnSync(process.execPath, [join(ROOT, '.tmp', 'examples', 'mint-module.js'), 'sandbox', 'structure.dat'], {
      cwd: work,
      env: { ...process.env, MINT_HOSTS_FILE: hosts },
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('structure.dat');
    expect(await readFile(join(work, 'results', 'line_counts.txt'), 'utf8')).toBe('2 structure.dat\n');
    expect(await readFile(join(work, 'remote_program_exec.log'), 'utf8')).toContain('wrote results/line_counts.txt');
  }, 180_000);

  it('hosts.yaml is a valid profiles file', async () => {
    const profiles = parseProfiles(await readFile(join(ROOT, 'examples', 'hosts.yaml'), 'utf8'), 'examples/hosts.yaml');
    expect(Object.keys(profiles)).toEqual(['calc-site', 'cloud-site']);
    expect(profiles['calc-site']).toMatchObject({ port: 50022, proxyCommand: expect.stringContaining('%h %p') });
  });

  it('the sample remote-side program passes shellcheck', () => {
    const r = spawnSync('shellcheck', ['-s', 'sh', join(ROOT, 'examples', 'execute_remote-side_program_ssh.sh')], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
