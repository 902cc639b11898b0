/** Site limits and the audit trail: --export, --max-jobs, --max-age-days, the audit log, probe. */
import { describe, expect, it } from 'vitest';
import { chmod, readFile, readdir, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runRemote } from '../../src/index.js';
import { probeHost } from '../../src/probe/probe.js';
import { freshDir, useSandbox } from '../support/fixture.js';

const PROGRAM = `#!/bin/sh
case "$1" in
  secrets) echo s > secret.txt; echo 1,2 > result.csv; mkdir -p deep/er; echo 3,4 > deep/er/more.csv; echo k > deep/er/key.pem ;;
  slow) sleep 20 ;;
  fail) exit 1 ;;
esac
exit 0
`;

describe('gateway limits', async () => {
  const dir = await freshDir();
  await writeFile(join(dir, 'p.sh'), PROGRAM);
  await chmod(join(dir, 'p.sh'), 0o755);
  const sandbox = useSandbox({ program: join(dir, 'p.sh') });

  it('--export: only files matching the allow-list leave the remote side', async () => {
    await sandbox().reinstall({ export: '*.csv' });
    const out = await freshDir();
    const r = await runRemote({ host: sandbox().host, outputDir: out, args: ['secrets'] });
    expect(r.exitCode).toBe(0);
    expect(r.files.sort()).toEqual(['deep/er/more.csv', 'result.csv']);
    expect(existsSync(join(out, 'secret.txt'))).toBe(false);
    expect(existsSync(join(out, 'deep', 'er', 'key.pem'))).toBe(false);
    await sandbox().reinstall({});
  });

  it('--max-jobs: a job over the limit is refused with E_LIMIT and not retried', async () => {
    await sandbox().reinstall({ maxJobs: 1 });
    const controller = new AbortController();
    const first = runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['slow'], signal: controller.signal, cleanup: 'always' });
    first.catch(() => undefined);
    await waitFor(async () => (await readdir(sandbox().root)).some((e) => existsSync(join(sandbox().root, e, 'pid'))));
    const events: string[] = [];
    const second = await runRemote({ host: sandbox().host, outputDir: await freshDir(), onEvent: (e) => events.push(e.type) }).catch((e: unknown) => e);
    expect(second).toMatchObject({ code: 'GATEWAY_REFUSED', gatewayCode: 'E_LIMIT' });
    expect(events.filter((e) => e === 'retrying')).toEqual([]);
    controller.abort();
    await expect(first).rejects.toMatchObject({ code: 'CANCELLED' });
    await sandbox().reinstall({});
  });

  it('--max-jobs: a refused job leaves no inputs behind; with waitForSlot it waits (waiting events) and then runs', async () => {
    await sandbox().reinstall({ maxJobs: 1 });
    const work = await freshDir();
    await writeFile(join(work, 'in.dat'), 'x\n');
    // The first job holds the only slot until the waiter has said it waits: then it is cancelled,
    // which frees the slot. (A 3 s job used to end, under load, before the waiter ever asked.)
    const controller = new AbortController();
    const first = runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['slow'], signal: controller.signal, cleanup: 'always' });
    first.catch(() => undefined);
    await waitFor(async () => (await readdir(sandbox().root)).some((e) => existsSync(join(sandbox().root, e, 'pid'))));
    const refusedId = '0a0b0c0d-1111-4222-8333-444455556666';
    const refused = await runRemote({ host: sandbox().host, jobId: refusedId, inputs: [join(work, 'in.dat')], outputDir: await freshDir() }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'GATEWAY_REFUSED', gatewayCode: 'E_LIMIT' });
    expect(existsSync(join(sandbox().root, refusedId))).toBe(false);
    const events: string[] = [];
    const waited = await runRemote({
      host: sandbox().host,
      inputs: [join(work, 'in.dat')],
      outputDir: await freshDir(),
      waitForSlot: true,
      timeoutMs: 30_000,
      onEvent: (e) => {
        events.push(e.type);
        if (e.type === 'waiting') controller.abort();
      },
    });
    expect(waited.exitCode).toBe(0);
    expect(events).toContain('waiting');
    expect(events.indexOf('waiting')).toBeLessThan(events.indexOf('started'));
    await expect(first).rejects.toMatchObject({ code: 'CANCELLED' });
    await sandbox().reinstall({});
  }, 60_000);

  it('--max-age-days: old finished jobs are swept when a new job starts; recent ones stay', async () => {
    const old = await runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['fail'] });
    const recent = await runRemote({ host: sandbox().host, outputDir: await freshDir(), args: ['fail'] });
    const oldDir = join(sandbox().root, old.jobId);
    const longAgo = new Date(Date.now() - 3 * 86_400_000);
    await utimes(oldDir, longAgo, longAgo);
    await sandbox().reinstall({ maxAgeDays: 2 });
    await runRemote({ host: sandbox().host, outputDir: await freshDir() });
    expect(existsSync(oldDir)).toBe(false);
    expect(existsSync(join(sandbox().root, recent.jobId))).toBe(true);
    await sandbox().reinstall({});
  });

  it('audits each verb with key name, client address, request id, verb, job, decision and then outcome', async () => {
    const r = await runRemote({ host: sandbox().host, outputDir: await freshDir() });
    const audit = await readFile(join(sandbox().root, '.mint-gateway-audit.log'), 'utf8');
    const mine = audit.split('\n').filter((l) => l.includes(`job=${r.jobId}`));
    expect(mine.map((l) => / verb=(\S+) job=\S+ (.*)$/.exec(l)?.slice(1).join(' '))).toEqual([
      'run decision=accepted',
      'program outcome=ok exit=0',
      'run outcome=ok exit=0',
      // takex: a small job's results come as an inline stream (test/gateway/inline.test.ts).
      'takex decision=accepted',
      // outputs=: the digest of the manifest the takex served (nothing: the hash of no line), on its
      // outcome line (the acceptance comes before the staging it records).
      'takex outcome=ok exit=0 outputs=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    ]);
    for (const line of mine) expect(line).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ prev=[0-9a-f]{64} key=mint-sandbox from=127\.0\.0\.1 req=\d+\.\d+ verb=\S+ job=\S+ \S+( exit=\d+( outputs=[0-9a-f]{64})?)?$/);
    const req = (l: string | undefined): string | undefined => / req=(\S+) /.exec(l ?? '')?.[1];
    // The program's line carries the id of the request that started it.
    expect(new Set(mine.slice(0, 3).map(req)).size).toBe(1);
    expect(req(mine[3])).toBe(req(mine[4]));
  });

  it('probe reports protocol, resources and the site limits', async () => {
    await sandbox().reinstall({ maxJobs: 3, minFreeMb: 10 });
    const p = await probeHost(sandbox().host);
    expect(p.ok).toBe(true);
    expect(p.gateway).toEqual({ protocol: 2, version: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    expect(p.resources?.cpus).toBeGreaterThan(0);
    await sandbox().reinstall({});
  });
});

async function waitFor(check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}
