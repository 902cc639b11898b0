/**
 * examples/execute_remote_command.sh as MInt uses program B: a program-A-like wrapper symlinks the
 * module's input ports to B's fixed file names in a fresh tool dir, runs B there, and tests only its
 * exit status; the results must be in the tool dir. On failure B prints the remote log between
 * MInt's markers and exits 1. B calls the built CLI (bin/mint-ssh-exec.mjs), as an installed copy would.
 */
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freshDir, useSandbox } from '../support/fixture.js';

const ROOT = join(import.meta.dirname, '..', '..');

const PROGRAM = `#!/bin/sh
# A site program reading B's three fixed input names.
for f in reduction_area.dat tesile_strength.dat yeild_strength.dat; do
  [ -f "$f" ] || { echo "missing $f"; exit 3; }
done
if grep -q fail reduction_area.dat; then echo "solver failed on purpose"; exit 9; fi
cat reduction_area.dat tesile_strength.dat yeild_strength.dat >combined.txt
echo done
`;

describe('program B drop-in (examples/execute_remote_command.sh)', async () => {
  const dir = await freshDir();
  await writeFile(join(dir, 'p.sh'), PROGRAM);
  await chmod(join(dir, 'p.sh'), 0o755);
  const sandbox = useSandbox({ program: join(dir, 'p.sh') });

  /** Program A: ports in a data dir, symlinked into a fresh tool dir under B's names; then B. */
  async function programA(reduction: string): Promise<{ code: number | null; stdout: string; stderr: string; tool: string }> {
    const ports = await freshDir();
    await writeFile(join(ports, 'port1'), reduction);
    await writeFile(join(ports, 'port2'), '2\n');
    await writeFile(join(ports, 'port3'), '3\n');
    const tool = await freshDir();
    await symlink(join(ports, 'port1'), join(tool, 'reduction_area.dat'));
    await symlink(join(ports, 'port2'), join(tool, 'tesile_strength.dat'));
    await symlink(join(ports, 'port3'), join(tool, 'yeild_strength.dat'));
    await copyFile(join(ROOT, 'examples', 'execute_remote_command.sh'), join(tool, 'execute_remote_command.sh'));
    const config = join(tool, '..', `hosts-${Date.now()}.yaml`);
    await writeFile(config, sandbox().profileYaml());
    const bin = join(tool, 'bin');
    await mkdir(bin);
    await symlink(join(ROOT, 'bin', 'mint-ssh-exec.mjs'), join(bin, 'mint-ssh-exec'));
    const r = spawnSync('sh', ['./execute_remote_command.sh'], {
      cwd: tool,
      env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, MINT_SSH_EXEC_CONFIG: config, MINT_REMOTE_HOST: sandbox().host.name, MISYSTEM_SITEID: 'mint-test-no-such-site' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr, tool };
  }

  it('brings the results into the tool dir and exits 0', async () => {
    const r = await programA('1\n');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await readFile(join(r.tool, 'combined.txt'), 'utf8')).toBe('1\n2\n3\n');
    expect(r.stdout).not.toContain('remote side log');
  });

  it("prints the remote log between MInt's markers and exits 1 when the program fails", async () => {
    const r = await programA('fail\n');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/---------- remote side log ----------------\n(.|\n)*solver failed on purpose\n(.|\n)*---------- remote side log ----------------\n$/);
  });
});
