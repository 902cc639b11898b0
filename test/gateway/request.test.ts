/**
 * The startx/runx request decoder (mgw_read_request), fed hostile bodies on stdin, under dash and
 * bash: every malformed line, value, name or size is refused with E_USAGE before anything runs, and
 * what is accepted reaches the program's argv byte for byte (never through a shell).
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GATEWAY_SCRIPT } from '../../src/site/install.js';
import { formatRequest } from '../../src/gateway/protocol.js';
import { freshDir } from '../support/fixture.js';

const hex = (text: string | Buffer): string => Buffer.from(text).toString('hex');

describe.each(['dash', 'bash'])('the request on stdin, under %s', async (shell) => {
  const dir = await freshDir();
  const root = join(dir, 'root');
  await mkdir(root, { mode: 0o700 });
  const program = join(dir, 'prog.sh');
  await writeFile(program, '#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done >argv.bin\nenv >env.txt\n');
  await chmod(program, 0o755);
  const canary = join(dir, 'pwned');

  function gw(verb: string, body: string | Buffer, extra: string[] = []): { code: number | null; stderr: string; job: string } {
    const job = randomUUID();
    const r = spawnSync(shell, [GATEWAY_SCRIPT, '--root', root, '--program', program, '--program', `other=${program}`, '--allow-env', 'MINT_CASE', '--client-timeout', '2', ...extra], {
      env: { PATH: '/usr/bin:/bin', HOME: dir, SSH_ORIGINAL_COMMAND: `mint-gw ${verb} ${job}` },
      input: body,
      encoding: 'utf8',
    });
    return { code: r.status, stderr: r.stderr, job };
  }

  const refused: Array<[string, string | Buffer, RegExp]> = [
    ['an unknown kind', 'exec 6964\n', /request lines are 'program HEX', 'arg HEX' or 'env HEX'/],
    ['shell syntax as a line', `$(touch ${canary})\n`, /request lines are/],
    ['uppercase hex', 'arg 4A\n', /lowercase hex/],
    ['an odd number of hex digits', 'arg 414\n', /whole bytes of hex/],
    ['a NUL byte in a value', 'arg 410042\n', /NUL byte/],
    ['a raw NUL in the body', Buffer.from('arg 41\n\0arg 42\n'), /request lines are|NUL/],
    ['two spaces', 'arg  41\n', /lowercase hex/],
    ['a CR at the end of a line', 'arg 41\r\n', /lowercase hex/],
    ['an empty value', 'arg \n', /lowercase hex/],
    ['a value over 4096 bytes', `arg ${'41'.repeat(4097)}\n`, /longer than 4096 bytes/],
    ['65 arguments', 'arg 41\n'.repeat(65), /more than 64 program arguments/],
    ['two programs', `program ${hex('other')}\nprogram ${hex('other')}\n`, /more than one program/],
    ['an unknown program', `program ${hex('nope')}\n`, /unknown program 'nope' \(this site has: other\)/],
    ['a program name with a slash', `program ${hex('../x')}\n`, /letters, digits and \._-/],
    ['a variable the site does not allow', `env ${hex('LD_PRELOAD=/tmp/x.so')}\n`, /does not let a client set LD_PRELOAD/],
    ['a variable without =', `env ${hex('MINT_CASE')}\n`, /NAME=VALUE/],
    ['a variable with a newline', `env ${hex('MINT_CASE=a\nb')}\n`, /newline/],
    ['a body over 1 MiB', 'arg 41\n'.repeat(150_000), /larger than 1 MiB/],
    ['resources on a site without a scheduler', `cpus ${hex('2')}\n`, /without a batch scheduler; resources .* cannot be requested/],
    ['a resource of 0', `cpus ${hex('0')}\n`, /cpus must be a whole number from 1/],
    ['a resource with shell syntax', `memory_mb ${hex('1;id')}\n`, /memory_mb must be a whole number from 1/],
    ['a resource given twice', `nodes ${hex('1')}\nnodes ${hex('2')}\n`, /nodes is given twice/],
    ['a resource over 9 digits', `walltime_min ${hex('1234567890')}\n`, /walltime_min is too large/],
  ];

  it.each(refused)('refuses %s with E_USAGE, and nothing runs', (_name, body, message) => {
    for (const verb of ['startx', 'runx']) {
      const r = gw(verb, body);
      expect(r.code, r.stderr).toBe(64);
      expect(r.stderr).toMatch(/^mint-gw: error: E_USAGE: /);
      expect(r.stderr).toMatch(message);
      expect(existsSync(join(root, r.job))).toBe(false);
    }
    expect(existsSync(canary)).toBe(false);
  });

  it('holds resources to the site maxima of a --scheduler slurm gateway (E_LIMIT, nothing made) and refuses bad scheduler options (E_CONFIG)', () => {
    const slurm = ['--scheduler', 'slurm', '--max-cpus', '2', '--max-memory-mb', '1000', '--max-walltime-min', '30'];
    for (const [body, message] of [
      [`cpus ${hex('3')}\n`, /E_LIMIT: cpus 3 is over the site maximum of 2/],
      [`memory_mb ${hex('1001')}\n`, /E_LIMIT: memory \(MB\) 1001 is over the site maximum of 1000/],
      [`walltime_min ${hex('31')}\n`, /E_LIMIT: walltime \(minutes\) 31 is over the site maximum of 30/],
    ] as const) {
      const r = gw('startx', body, slurm);
      expect(r.code, r.stderr).toBe(69);
      expect(r.stderr).toMatch(message);
      expect(existsSync(join(root, r.job))).toBe(false);
    }
    for (const [extra, message] of [
      [['--scheduler', 'lsf'], /--scheduler must be slurm, sge, pbs or none/],
      [['--scheduler', 'sge', '--scheduler-args', '-q all.q -b y'], /may not set '-b'/],
      [['--scheduler', 'sge', '--scheduler-args', '-@ /tmp/more-options'], /may not set '-@'/],
      [['--scheduler', 'pbs', '--scheduler-args', '-W block=true'], /may not set 'block=true'/],
      [['--scheduler', 'pbs', '--scheduler-args', '-Wblock=true'], /may not set '-Wblock=true'/],
      [['--scheduler', 'pbs', '--scheduler-bin', 'opt/pbs/bin'], /--scheduler-bin must be an absolute path/],
      [['--scheduler', 'pbs', '--scheduler-bin', '/tmp'], /--scheduler-bin \/tmp is writable by group or others/],
      [['--scheduler', 'pbs', '--scheduler-bin', '/nonexistent/pbs'], /is not a directory/],
      [['--scheduler-bin', '/usr/bin'], /--scheduler-bin needs --scheduler/],
      [['--scheduler', 'slurm', '--scheduler-args', '-p short --output=/tmp/x'], /may not set '--output=\/tmp\/x'/],
      [['--scheduler', 'slurm', '--scheduler-args', '-p $(id)'], /byte outside/],
      [['--scheduler-args', '-p short'], /needs --scheduler slurm, sge or pbs/],
      [['--scheduler', 'slurm', '--max-cpus', '08'], /--max-cpus must be a whole number/],
    ] as const) {
      const r = gw('startx', `arg ${hex('x')}\n`, [...extra]);
      expect(r.code, r.stderr).toBe(78);
      expect(r.stderr).toMatch(message);
    }
  });

  it('measures the 1 MiB bound before anything can drop the tail (a cut inside a run of newlines)', () => {
    const body = Buffer.concat([Buffer.from('arg 41\n'), Buffer.alloc(1_048_570, 0x0a), Buffer.from('arg 42\nenv 6e6f\n')]);
    const r = gw('startx', body);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/larger than 1 MiB/);
    expect(existsSync(join(root, r.job))).toBe(false);
  });

  it.each(['BASH_ENV', 'LD_PRELOAD', 'PATH', 'PYTHONPATH', 'NODE_OPTIONS', 'MINT_JOB_ID'])('refuses --allow-env %s: a client could run code of its choosing', (name) => {
    const r = gw('startx', `env ${hex(`${name}=x`)}\n`, ['--allow-env', `MINT_CASE,${name}`]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(new RegExp(`E_CONFIG: --allow-env ${name} would let a client run code`));
  });

  it('refuses a named program given twice', () => {
    const r = gw('startx', '', ['--program', `other=${program}`]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/--program other=\.\.\. is given twice/);
  });

  it('refuses a client that never ends its request, after --client-timeout', () => {
    const job = randomUUID();
    const r = spawnSync('sh', ['-c', `(sleep 4) | SSH_ORIGINAL_COMMAND="mint-gw startx ${job}" ${shell} '${GATEWAY_SCRIPT}' --root '${root}' --program '${program}' --client-timeout 1`], {
      env: { PATH: '/usr/bin:/bin', HOME: dir },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/did not end within 1 s/);
    expect(existsSync(join(root, job))).toBe(false);
  });

  it('delivers every accepted argument byte for byte: any UTF-8, newlines, shell syntax', async () => {
    const args = ['model/a b.inp', '応力', '~', '$HOME', '$(id)', "a'b\"c", 'line\nbreak', '-x', '*', 'x'.repeat(4096)];
    const r = gw('startx', formatRequest({ program: 'other', args, env: { MINT_CASE: 'case 1' } }));
    expect(r.code, r.stderr).toBe(0);
    const work = join(root, r.job, r.job);
    for (let i = 0; i < 50 && !existsSync(join(root, r.job, 'exit')); i += 1) await new Promise((res) => setTimeout(res, 100));
    expect((await readFile(join(work, 'argv.bin'), 'utf8')).split('\0').slice(0, -1)).toEqual(args);
    expect(await readFile(join(work, 'env.txt'), 'utf8')).toMatch(/^MINT_CASE=case 1$/m);
    expect((await readdir(dir)).includes('pwned')).toBe(false);
  });
});
