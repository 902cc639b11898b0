/**
 * Polling is batched per job root: N clients following N jobs through a `--scheduler slurm`
 * gateway cause about one squeue every 2 s between them (mgw_sched_polled), not one per client
 * every 2 s. Counted with a logging squeue on the site's --scheduler-bin, in front of the real one,
 * against the private Slurm. Skipped only where not root, with the reason printed.
 */
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runRemote } from '../../src/index.js';
import { freshDir } from '../support/fixture.js';
import { siteAccount, useSiteSandbox } from '../support/site-account.js';
import { slurmUnavailable, useSlurm } from '../support/slurm.js';

const why = slurmUnavailable();
if (why) process.stdout.write(`[cluster tests] skipped: ${why}\n`);

describe.skipIf(why !== undefined)('batched polling on a --scheduler slurm gateway', () => {
  const slurm = useSlurm({ cpus: 2 });
  // MInt's key logs into an unprivileged account, as on a site: the scheduler runs its jobs as it.
  const sandbox = useSiteSandbox({ program: '/bin/true' });
  let log = '';
  beforeAll(async () => {
    const dir = await freshDir();
    // The gateway runs as the site account: it must reach the bin dir and append to the log.
    await chmod(dir, 0o755);
    const bin = join(dir, 'bin');
    await mkdir(bin, { mode: 0o755 });
    log = join(dir, 'squeue.log');
    // Every squeue the gateway runs, with the time and its arguments, then the real one.
    await writeFile(join(bin, 'squeue'), `#!/bin/sh\necho "$(date +%s.%N) $*" >>${log}\nexec /usr/bin/squeue "$@"\n`);
    await chmod(join(bin, 'squeue'), 0o755);
    await writeFile(log, '');
    await chown(log, siteAccount().uid, siteAccount().gid);
    await sandbox().reinstall({ scheduler: 'slurm', schedulerBin: bin, env: [`SLURM_CONF=${slurm().conf}`] });
    await writeFile(sandbox().program, '#!/bin/sh\necho started; sleep "$1"; echo done\n');
  }, 60_000);

  it('six clients following six jobs (two run, four wait) cause about one squeue per 2 s, not one per client', async () => {
    await truncate(log);
    const t0 = Date.now();
    const results = await Promise.all(Array.from({ length: 6 }, async () => runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['6'] })));
    const seconds = (Date.now() - t0) / 1000;
    for (const r of results) expect(r).toMatchObject({ state: 'exited', exitCode: 0, log: 'started\ndone\n' });
    const calls = readFileSync(log, 'utf8').trim().split('\n').filter(Boolean);
    process.stdout.write(`[cluster] 6 followers over ${seconds.toFixed(1)} s: ${calls.length} squeue calls (${(calls.length / seconds).toFixed(2)}/s)\n`);
    // Every call is the one query for all of the account's jobs (the account the key logs into).
    for (const c of calls) expect(c).toMatch(new RegExp(` -h -t all -u ${siteAccount().name} -o %i\\|%T\\|%r$`));
    // One per 2 s, plus the refreshes a new submission or an end forces (a snapshot older than a job
    // does not answer for it); one per client every 2 s would be 3/s here.
    expect(calls.length).toBeLessThanOrEqual(Math.ceil(seconds / 2) + 12);
    expect(calls.length / seconds).toBeLessThan(1.2);
  }, 120_000);
});
