/** A cancel after the program has exited, while results come back, must not lose them. */
import { describe, expect, it } from 'vitest';
import { chmod, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CancelledError, attach, runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';

describe('cancel during the download', async () => {
  const dir = await freshDir();
  await writeFile(join(dir, 'p.sh'), '#!/bin/sh\nhead -c 20000000 /dev/zero > big.out\necho done\n');
  await chmod(join(dir, 'p.sh'), 0o755);
  const sandbox = useSandbox({ program: join(dir, 'p.sh') });

  it('keeps the remote results (even with cleanup: always), and attach fetches them later', async () => {
    const out = await freshDir();
    const controller = new AbortController();
    const error = await runRemote({
      host: sandbox().host,
      outputDir: out,
      cleanup: 'always',
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === 'exited') controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CancelledError);
    const result = (error as CancelledError).result as { jobId: string; state: string; exitCode: number; cleanedUp: boolean; cancelled: boolean };
    expect(result).toMatchObject({ state: 'exited', exitCode: 0, cleanedUp: false });
    expect(existsSync(join(sandbox().root, result.jobId, result.jobId, 'big.out'))).toBe(true);
    expect((await readdir(out)).filter((f) => f !== 'remote_program_exec.log')).toEqual([]);

    const again = await attach({ host: sandbox().host, jobId: result.jobId, outputDir: out, cleanup: 'always' });
    expect(again.files).toEqual(['big.out']);
    expect(again.cleanedUp).toBe(true);
  });
});
