/** Both remote-shell shims (Perl, the default where perl exists; Node, the fallback) move bytes intact both ways. */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runRemote } from '../../src/index.js';
import { shimKind } from '../../src/transfer/rsync.js';
import { freshDir, useSandbox } from '../support/fixture.js';

describe('rsync remote-shell shims', async () => {
  const dir = await freshDir();
  // The program copies the input and appends its own bytes, so the download differs from the upload.
  await writeFile(join(dir, 'p.sh'), '#!/bin/sh\ncat in.bin > out.bin\nhead -c 3000000 /dev/urandom >> out.bin\n');
  await chmod(join(dir, 'p.sh'), 0o755);
  const sandbox = useSandbox({ program: join(dir, 'p.sh') });
  const saved = process.env.MINT_SSH_EXEC_SHIM;
  afterEach(() => {
    if (saved === undefined) delete process.env.MINT_SSH_EXEC_SHIM;
    else process.env.MINT_SSH_EXEC_SHIM = saved;
  });

  it('picks Perl where /usr/bin/perl has its socket modules (as on Debian), and honours the override', () => {
    expect(shimKind({})).toBe('perl');
    expect(shimKind({ MINT_SSH_EXEC_SHIM: 'node' })).toBe('node');
  });

  it.each(['perl', 'node'] as const)('%s shim: 12 MB up and 15 MB down, byte for byte', async (kind) => {
    process.env.MINT_SSH_EXEC_SHIM = kind;
    const work = await freshDir();
    const input = randomBytes(12 * 1024 * 1024);
    await writeFile(join(work, 'in.bin'), input);
    const r = await runRemote({ host: sandbox().host, inputs: [join(work, 'in.bin')], outputDir: join(work, 'out') });
    expect(r.exitCode).toBe(0);
    const out = await readFile(join(work, 'out', 'out.bin'));
    expect(out.length).toBe(input.length + 3_000_000);
    expect(createHash('sha256').update(out.subarray(0, input.length)).digest('hex')).toBe(createHash('sha256').update(input).digest('hex'));
  });
});
