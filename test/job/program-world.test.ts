/**
 * The program's world is MInt's (issue "Real MInt programs on real external computers", items 1-3):
 * its cwd is named by the job id, as MInt's /tmp/<uuid> is, and what it leaves comes back with the
 * modes it gave it (MInt's `rsync -av` keeps them), never with a set-id bit; its PATH and umask are
 * the account's (see also stolen-key.test.ts, 7).
 */
import { existsSync } from 'node:fs';
import { chmod, lstat, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';

const PROGRAM = `#!/bin/sh
basename "$PWD" >cwd.txt
echo "$PATH" >path.txt
echo out >out.txt; chmod 644 out.txt
mkdir -p shared; chmod 755 shared; echo s >shared/s.txt; chmod 640 shared/s.txt
printf '#!/bin/sh\\n' >run.sh; chmod 755 run.sh
echo x >setid; chmod 4755 setid
ln -s out.txt inlink; ln -s shared/s.txt shared-link; ln -s /etc/hostname outlink; ln -s ../.. up
`;

describe("the program's world", async () => {
  const dir = await freshDir();
  await writeFile(join(dir, 'p.sh'), PROGRAM);
  await chmod(join(dir, 'p.sh'), 0o755);
  const sandbox = useSandbox({ program: join(dir, 'p.sh') });

  it('runs in a cwd named by the job id; outputs come back with their modes (no set-id bit), in-tree symlinks as symlinks, outside ones named', async () => {
    const out = await freshDir();
    const r = await runRemote({ host: sandbox().host, outputDir: out });
    expect(r.exitCode).toBe(0);
    expect((await readFile(join(out, 'cwd.txt'), 'utf8')).trim()).toBe(r.jobId);
    expect((await readFile(join(out, 'path.txt'), 'utf8')).trim().split(':')).toContain('/usr/local/bin');
    const mode = async (p: string): Promise<string> => ((await stat(join(out, p))).mode & 0o7777).toString(8);
    expect({
      out: await mode('out.txt'),
      shared: await mode('shared'),
      s: await mode('shared/s.txt'),
      run: await mode('run.sh'),
      setid: await mode('setid'),
    }).toEqual({ out: '644', shared: '755', s: '640', run: '755', setid: '755' });
    // Symlinks inside the job come back as symlinks (as MInt's rsync -av brings them); those that
    // point outside are never made here, and are named in the result.
    expect(await readlink(join(out, 'inlink'))).toBe('out.txt');
    expect(await readlink(join(out, 'shared-link'))).toBe('shared/s.txt');
    expect(existsSync(join(out, 'outlink')) || (await lstat(join(out, 'outlink')).catch(() => undefined)) !== undefined).toBe(false);
    expect((await lstat(join(out, 'up')).catch(() => undefined)) === undefined).toBe(true);
    expect([...r.skipped].sort()).toEqual(['outlink -> /etc/hostname', 'up -> ../..']);
  });
});

describe('what a job asks of the site: any argument, a named program, allowed variables', async () => {
  const dir = await freshDir();
  const show = `#!/bin/sh
{ echo "program=$(basename "$0")"; for a in "$@"; do printf '[%s]\\n' "$a"; done; echo "CASE=\${MINT_CASE-unset}"; } >seen.txt
`;
  await writeFile(join(dir, 'default.sh'), show);
  await writeFile(join(dir, 'aster.sh'), show);
  await chmod(join(dir, 'default.sh'), 0o755);
  await chmod(join(dir, 'aster.sh'), 0o755);
  const sandbox = useSandbox({ program: join(dir, 'default.sh'), gateway: { programs: { aster: join(dir, 'aster.sh') }, allowEnv: ['MINT_CASE'] } });

  it('delivers arguments with /, spaces, Japanese, ~ and $ byte for byte, runs a named program, passes an allowed variable', async () => {
    const out = await freshDir();
    const args = ['model/a b.inp', '応力', '~', '$HOME', 'x;id', 'plain'];
    const r = await runRemote({ host: sandbox().host, outputDir: out, args, program: 'aster', env: { MINT_CASE: 'case 1' } });
    expect(r.exitCode).toBe(0);
    expect(await readFile(join(out, 'seen.txt'), 'utf8')).toBe(`program=aster.sh\n${args.map((a) => `[${a}]`).join('\n')}\nCASE=case 1\n`);
    // Without a program name the default runs; plain arguments still take the short form.
    const out2 = await freshDir();
    expect((await runRemote({ host: sandbox().host, outputDir: out2, args: ['plain'] })).exitCode).toBe(0);
    expect(await readFile(join(out2, 'seen.txt'), 'utf8')).toBe('program=execute_remote-side_program_ssh.sh\n[plain]\nCASE=unset\n');
  });

  it('refuses an unknown program and a variable the site does not allow (typed, before anything runs)', async () => {
    await expect(runRemote({ host: sandbox().host, outputDir: await freshDir(), program: 'nope' })).rejects.toMatchObject({
      code: 'GATEWAY_REFUSED',
      gatewayCode: 'E_USAGE',
      message: expect.stringMatching(/unknown program 'nope' \(this site has: aster\)/),
    });
    await expect(runRemote({ host: sandbox().host, outputDir: await freshDir(), env: { PATH: '/evil' } })).rejects.toMatchObject({
      gatewayCode: 'E_USAGE',
      message: expect.stringMatching(/does not let a client set PATH/),
    });
    await expect(runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['a\u0000b'] })).rejects.toMatchObject({ code: 'INPUT_INVALID' });
  });
});
