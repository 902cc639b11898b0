/**
 * A Slurm time limit (the slow one, in its own file so that it runs beside the others): Slurm
 * enforces a 1-minute --time only on its periodic check (about 60-90 s here), then TERMs the job
 * and KILLs it KillWait seconds later. A program that obeys TERM is `lost` with exit 143 and
 * sched_state TIMEOUT (its runner outlived it and recorded the status); one that ignores TERM is
 * KILLed with its runner: `lost`, no exit status (or 137), TIMEOUT. Skipped only where not root or without
 * the Slurm packages, with the reason printed.
 */
import { writeFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { runRemote } from '../../src/index.js';
import { freshDir } from '../support/fixture.js';
import { useSiteSandbox } from '../support/site-account.js';
import { slurmUnavailable, useSlurm } from '../support/slurm.js';

const why = slurmUnavailable();
if (why) process.stdout.write(`[cluster tests] skipped: ${why}\n`);

// exec: no shell is left to print "Terminated" into the log when Slurm TERMs the sleep before its
// shell (seen here: the log was 'started\nTerminated\n'; slurm.test.ts's 'sleep' mode had the same).
// An ignored TERM stays ignored across the exec.
const PROGRAM = `#!/bin/sh
[ "$1" = ignore ] && trap '' TERM
echo started
exec sleep 300
`;

describe.skipIf(why !== undefined)('a Slurm time limit', () => {
  const slurm = useSlurm({ cpus: 2 });
  // MInt's key logs into an unprivileged account, as on a site: the scheduler runs its jobs as it.
  const sandbox = useSiteSandbox({ program: '/bin/true' });
  beforeAll(async () => {
    await sandbox().reinstall({ scheduler: 'slurm', env: [`SLURM_CONF=${slurm().conf}`] });
    await writeFile(sandbox().program, PROGRAM);
  }, 60_000);

  it('ends the job as lost with sched_state TIMEOUT, whether the program obeys TERM or not', async () => {
    const t0 = performance.now();
    const [obeys, ignores] = await Promise.all(
      ['obey', 'ignore'].map(async (mode) => runRemote({ host: sandbox().host, outputDir: await freshDir(), args: [mode], resources: { walltimeMinutes: 1 } })),
    );
    process.stdout.write(`[cluster] a 1-minute Slurm time limit ended the jobs after ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    expect(obeys).toMatchObject({ state: 'lost', exitCode: 143, failed: true, log: 'started\n' });
    expect(obeys.scheduler).toMatchObject({ state: 'TIMEOUT' });
    // Slurm KILLs the job's processes one by one: the runner first (no exit status) or a moment after
    // the program (137).
    expect(ignores).toMatchObject({ state: 'lost', failed: true, log: 'started\n' });
    expect([undefined, 137]).toContain(ignores.exitCode);
    expect(ignores.scheduler).toMatchObject({ state: 'TIMEOUT' });
  }, 180_000);
});
