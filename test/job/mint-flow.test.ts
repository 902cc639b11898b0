/**
 * The program's world under the gateway against MInt's own flow as the reference: the same MInt-style
 * program, the same inputs and a Japanese path argument, once through runRemote and once the way
 * MInt's program B does it with plain OpenSSH (`ssh H "mkdir /tmp/ID"`, `rsync -av -L`,
 * `ssh H "cd /tmp/ID; PROG ARGS > log 2>&1"`, `rsync -av H:/tmp/ID/ ./`) with an ordinary key on the
 * same sshd and account. What the program saw (PATH, umask, locale variables, its cwd's basename, its
 * argv) and what came back (names, contents, modes, an in-tree symlink) must be the same, the job
 * id aside.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFile, chmod, lstat, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';
import { runCli, sshOptions } from '../support/hostile-helpers.js';

const PROGRAM = `#!/bin/sh
# A MInt-style remote program: names from its cwd, tools from PATH, outputs 0644 under the umask.
{
  echo "cwd_is_job=$( [ "$(basename "$PWD")" = "$MINT_ID" ] && echo yes || echo no)"
  echo "usr_local_bin_on_path=$(case ":$PATH:" in *:/usr/local/bin:*) echo yes ;; *) echo no ;; esac)"
  echo "umask=$(umask)"
  echo "LANG=\${LANG-unset}"
  for a in "$@"; do printf 'arg=[%s]\\n' "$a"; done
  echo "input=$(cat input.dat)"
} >seen.txt
mkdir -p results
echo result >results/out.txt
chmod 644 results/out.txt seen.txt
ln -s results/out.txt latest
`;

async function tree(dir: string, skip: Set<string>): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(dir, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (skip.has(r)) continue;
      const st = await lstat(join(dir, r));
      if (st.isSymbolicLink()) {
        out.push(`l ${r} -> ${await readlink(join(dir, r))}`);
        continue;
      }
      out.push(`${st.isDirectory() ? 'd' : 'f'} ${r} ${(st.mode & 0o777).toString(8)}${st.isFile() ? ` ${(await readFile(join(dir, r), 'utf8')).replace(/cwd_is_job=\w+\n/, '')}` : ''}`);
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out;
}

describe("the program's world against MInt's own OpenSSH flow", async () => {
  const dir = await freshDir();
  await writeFile(join(dir, 'p.sh'), PROGRAM);
  await chmod(join(dir, 'p.sh'), 0o755);
  // The site gives its programs a UTF-8 locale (as /etc/default/locale would).
  const sandbox = useSandbox({ program: join(dir, 'p.sh'), gateway: { env: ['LANG=C.UTF-8'] } });
  const args = ['model/a b.inp', '応力'];

  it('gives the program the same world and brings back the same results', async () => {
    const inputDir = await freshDir();
    await writeFile(join(inputDir, 'input.dat'), 'alpha\n');

    // Under the gateway. (MINT_ID stands for the job id in both flows.)
    const viaGateway = await freshDir();
    const id = randomUUID();
    await sandbox().reinstall({ env: ['LANG=C.UTF-8', `MINT_ID=${id}`] });
    const r = await runRemote({ host: sandbox().host, jobId: id, inputs: [join(inputDir, 'input.dat')], args, outputDir: viaGateway });
    expect(r.exitCode).toBe(0);

    // MInt's flow, with an ordinary key on the same sshd and account.
    const keyDir = await freshDir();
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'plain', '-f', join(keyDir, 'plain')]);
    await appendFile(sandbox().authorizedKeys, `${(await readFile(join(keyDir, 'plain.pub'), 'utf8')).trim()}\n`);
    const ssh = sshOptions(sandbox()).map((o) => (o === sandbox().clientKey ? join(keyDir, 'plain') : o));
    const target = `${sandbox().user}@127.0.0.1`;
    const rsh = ['ssh', ...ssh, '-p', String(sandbox().port)].map((w) => `'${w}'`).join(' ');
    const remote = `/tmp/mint-flow-${id}/${id}`;
    const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
    const step = async (file: string, argv: string[]): Promise<void> => {
      const res = await runCli(file, argv, { timeoutMs: 60_000 });
      expect(res.code, `${file} ${argv.join(' ')}: ${res.stderr}`).toBe(0);
    };
    try {
      await step('ssh', [...ssh, '-p', String(sandbox().port), target, `mkdir -p ${remote}`]);
      await step('rsync', ['-av', '-L', '-e', rsh, join(inputDir, 'input.dat'), `${target}:${remote}/`]);
      await step('ssh', [...ssh, '-p', String(sandbox().port), target, `cd ${remote}; LANG=C.UTF-8 MINT_ID=${id} ${join(dir, 'p.sh')} ${args.map(q).join(' ')} > ${remote}/remote_program_exec.log 2>&1`]);
      const viaOpenSsh = await freshDir();
      await step('rsync', ['-av', '-e', rsh, `${target}:${remote}/`, `${viaOpenSsh}/`]);

      // MInt's flow also brings its inputs back; the gateway's brings what the program left, and
      // writes its job record beside it (test/job/integrity.test.ts).
      const skip = new Set(['input.dat', 'remote_program_exec.log', '.mint-job.json']);
      const theirs = await tree(viaOpenSsh, skip);
      const ours = await tree(viaGateway, skip);
      expect(ours).toEqual(theirs);
      expect(ours).toContain('l latest -> results/out.txt');
      expect(await readFile(join(viaGateway, 'seen.txt'), 'utf8')).toMatch(/^cwd_is_job=yes\nusr_local_bin_on_path=yes\numask=0022\nLANG=C.UTF-8\narg=\[model\/a b.inp\]\narg=\[応力\]\ninput=alpha\n$/);
      expect(await readFile(join(viaOpenSsh, 'seen.txt'), 'utf8')).toMatch(/^cwd_is_job=yes\n/);
    } finally {
      execFileSync('rm', ['-rf', `/tmp/mint-flow-${id}`]);
    }
  });
});
