import { describe, expect, it } from 'vitest';
import { chmod, mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../src/cli/mint-ssh-exec.js';
import { freshDir, useSandbox } from '../support/fixture.js';
import { runMain } from '../support/cli-io.js';

const PROGRAM = `#!/bin/sh
echo "hello from the remote side: $*"
case "$1" in
  fail) echo "bad input" >&2; exit 5 ;;
  slow) sleep 30 ;;
esac
echo result > out.txt
`;

describe('mint-ssh-exec CLI against the sandbox host', async () => {
  const programDir = await freshDir();
  await writeFile(join(programDir, 'p.sh'), PROGRAM);
  await chmod(join(programDir, 'p.sh'), 0o755);
  const sandbox = useSandbox({ program: join(programDir, 'p.sh') });
  const config = async (): Promise<string> => {
    const dir = await freshDir();
    const file = join(dir, 'hosts.yaml');
    await writeFile(file, sandbox().profileYaml());
    return file;
  };

  it('probe: every step passes, READY verdict, exit 0', async () => {
    const r = await runMain(main, ['probe', 'sandbox', '--config', await config()]);
    expect(r.code).toBe(0);
    for (const step of ['config', 'reach', 'banner', 'host-key', 'auth', 'gateway', 'rsync-local', 'rsync-remote', 'program', 'job-root', 'resources', 'latency']) {
      expect(r.stdout).toMatch(new RegExp(`\\[( ok |warn)\\] ${step}\\b`));
    }
    expect(r.stdout).toContain('OpenSSH');
    expect(r.stdout).toContain('verdict: READY');
  });

  it('probe: human output matches the snapshot (numbers, paths and versions normalised)', async () => {
    const r = await runMain(main, ['probe', 'sandbox', '--config', await config()]);
    const normalised = r.stdout
      .split('\n')
      .filter((line) => !/^\s+note: /.test(line)) // the slow-shell note depends on the machine
      .join('\n')
      .replace(/\[warn\]/g, '[ ok ]')
      .replace(/OpenSSH_[^\n]*/g, 'OpenSSH_V')
      .replace(/rsync\s+version \S+\s+protocol version \d+/g, 'rsync version V protocol version P')
      .replace(/rsync \d+\.\d+\.\d+/g, 'rsync V')
      .replace(/gateway \d+\.\d+\.\d+/g, 'gateway V')
      .replace(/\/[^\s]*\/(mint-sandbox-|mint-test-)[^\s]*/g, '<path>')
      .replace(/\b\w+@127\.0\.0\.1:\d+/g, 'USER@127.0.0.1:PORT')
      .replace(/authenticated as \S+/, 'authenticated as USER')
      .replace(/\d+(\.\d+)?/g, 'N');
    expect(normalised).toMatchSnapshot();
  });

  it('probe --json: a stable schema with resources and latency', async () => {
    const r = await runMain(main, ['probe', 'sandbox', '--json', '--config', await config()]);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout) as { ok: boolean; hosts: { host: string; ok: boolean; steps: { step: string; ok: boolean; detail: string }[]; resources: Record<string, unknown>; latency: Record<string, number>; gateway: { protocol: number } }[] };
    expect(json.ok).toBe(true);
    const [host] = json.hosts;
    expect(host).toMatchObject({ host: 'sandbox', ok: true, gateway: { protocol: 2 } });
    expect(host!.resources).toMatchObject({ cpus: expect.any(Number), memTotalMb: expect.any(Number), freeMb: expect.any(Number) });
    expect(host!.latency.verbRoundTripMs).toBeGreaterThan(0);
    expect(host!.steps.every((s) => typeof s.detail === 'string')).toBe(true);
  });

  it('probe: distinct exit codes for an unknown host key, a refused key, a closed port, and several hosts at once', async () => {
    const dir = await freshDir();
    const base = sandbox().profileYaml();
    await writeFile(join(dir, 'empty_known_hosts'), '');
    const yaml = `${base}  badkey:\n    hostname: 127.0.0.1\n    port: ${sandbox().port}\n    user: ${sandbox().user}\n    identityFile: ${sandbox().clientKey}\n    knownHostsFile: ${join(dir, 'empty_known_hosts')}\n    sshConfig: false\n    agent: false\n  down:\n    hostname: 127.0.0.1\n    port: 1\n    sshConfig: false\n    retry:\n      retries: 0\n`;
    const file = join(dir, 'hosts.yaml');
    await writeFile(file, yaml);
    const unknown = await runMain(main, ['probe', 'badkey', '--config', file]);
    expect(unknown.code).toBe(13);
    expect(unknown.stdout).toMatch(/\[FAIL\] host-key/);
    expect(unknown.stdout).toContain('fix:');
    const down = await runMain(main, ['probe', 'down', '--config', file]);
    expect(down.code).toBe(11);
    expect(down.stdout).toMatch(/\[FAIL\] reach/);
    const both = await runMain(main, ['probe', 'sandbox', 'down', '--json', '--config', file]);
    const parsed = JSON.parse(both.stdout) as { ok: boolean; hosts: { host: string; ok: boolean }[] };
    expect(parsed.ok).toBe(false);
    expect(parsed.hosts.map((h) => [h.host, h.ok])).toEqual([
      ['sandbox', true],
      ['down', false],
    ]);
    expect(both.code).toBe(11);
  });

  it('run: sends files, streams the log, brings results back, exits with the program status', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'in.dat'), 'x');
    const out = join(dir, 'out');
    const ok = await runMain(main, ['run', 'sandbox', join(dir, 'in.dat'), '-o', out, '--arg', 'a=1', '--config', await config()]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('hello from the remote side: a=1');
    expect(await readFile(join(out, 'out.txt'), 'utf8')).toBe('result\n');
    expect(await readFile(join(out, 'in.dat'), 'utf8')).toBe('x');
    const failed = await runMain(main, ['run', 'sandbox', '-o', out, '--arg', 'fail', '--config', await config()]);
    expect(failed.code).toBe(5);
    expect(failed.stdout).toContain('bad input');
    expect(failed.stderr).toContain('exited with code 5');
  });

  it('run --json prints the result object and writes MInt solver_execute.log lines', async () => {
    const dir = await freshDir();
    const mintLog = join(dir, 'solver_logs', 'solver_execute.log');
    // The log's directory is never created: without it, run refuses before anything is sent.
    const refused = await runMain(main, ['run', 'sandbox', '-o', dir, '--mint-log', mintLog, '--config', await config()], process.env);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/solver_logs does not exist; it is never created/);
    await mkdir(join(dir, 'solver_logs'));
    // MISYSTEM_SITEID alone (MInt sets it for every module) writes nothing anywhere else.
    const r = await runMain(main, ['run', 'sandbox', '--json', '-o', dir, '--mint-log', mintLog, '--solver', 'abaqus', '--config', await config()], {
      ...process.env,
      MINT_USER_ID: 'u123',
      MISYSTEM_SITEID: 'mint-test-site-never-written',
    });
    expect(existsSync('/home/misystem/assets/workflow/mint-test-site-never-written')).toBe(false);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as Record<string, unknown>;
    // The job id is on stderr before anything is sent, with the command that picks the job up again.
    expect(r.stderr).toContain(`mint-ssh-exec: job ${String(result.jobId)} on sandbox (if this process dies: mint-ssh-exec attach sandbox ${String(result.jobId)})`);
    expect(Object.keys(result).sort()).toEqual(
      ['cancelled', 'cleanedUp', 'connections', 'exitCode', 'failed', 'files', 'host', 'jobId', 'log', 'logBytes', 'logFile', 'manifest', 'outputDir', 'recordFile', 'skipped', 'state', 'timings'].sort(),
    );
    expect(result).toMatchObject({ exitCode: 0, state: 'exited', failed: false, files: ['out.txt'] });
    const lines = (await readFile(mintLog, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^\\d{4}/\\d{2}/\\d{2} \\d{2}:\\d{2}:\\d{2}: start: abaqus: u123: ${String(result.jobId)}: unknown: unknown$`));
    expect(lines[1]).toMatch(/: normal end: abaqus: u123: /);
  });

  it('jobs lists a kept failed job; cancel stops a running one; attach finishes it', async () => {
    const dir = await freshDir();
    const cfg = await config();
    const failed = await runMain(main, ['run', 'sandbox', '--json', '-o', dir, '--arg', 'fail', '--config', cfg]);
    const jobId = (JSON.parse(failed.stdout) as { jobId: string }).jobId;
    const jobs = await runMain(main, ['jobs', 'sandbox', '--config', cfg]);
    expect(jobs.code).toBe(0);
    expect(jobs.stdout).toContain(`${jobId}  exited (exit 5)`);
    const jobsJson = JSON.parse((await runMain(main, ['jobs', 'sandbox', '--json', '--config', cfg])).stdout) as { jobs: { jobId: string; state: string }[] };
    expect(jobsJson.jobs).toContainEqual({ jobId, state: 'exited', exitCode: 5, sizeKiB: expect.any(Number), ageSeconds: expect.any(Number) });

    // A slow job: start it, cancel it from a second CLI call, and the first call reports cancelled.
    const controller = new AbortController();
    const slowId = '11111111-2222-4333-8444-555555555555';
    const running = runMain(main, ['run', 'sandbox', '--job-id', slowId, '-o', dir, '--arg', 'slow', '--config', cfg], process.env, controller.signal);
    await waitFor(() => existsSync(join(sandbox().root, slowId, 'pid')));
    const cancel = await runMain(main, ['cancel', 'sandbox', slowId, '--config', cfg]);
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toContain(`${slowId}  cancelled`);
    const finished = await running;
    expect(finished.code).toBe(207); // ExitCode.CANCELLED
    expect(finished.stderr).toContain('ended as cancelled');

    const attached = await runMain(main, ['attach', 'sandbox', jobId, '-o', join(dir, 'again'), '--json', '--config', cfg]);
    expect(attached.code).toBe(5);
    expect(JSON.parse(attached.stdout)).toMatchObject({ jobId, exitCode: 5, state: 'exited' });
  });

  it('run, attach, jobs, cancel, rm --json: a failure is one JSON document on stdout, {"error": {code, step, message, hint, jobId, host, exitCode}}', async () => {
    const cfg = await config();
    const dir = await freshDir();
    // A refusal from the gateway itself, through the real sshd: attach to a job that is not there.
    const missing = '99999999-8888-4777-8666-555555555555';
    const attached = await runMain(main, ['attach', 'sandbox', missing, '-o', dir, '--json', '--config', cfg]);
    expect(attached.code).toBe(205);
    const refusal = JSON.parse(attached.stdout) as { error: Record<string, unknown> };
    expect(Object.keys(refusal)).toEqual(['error']);
    expect(refusal.error).toMatchObject({ code: 'GATEWAY_REFUSED', gatewayCode: 'E_NOJOB', step: 'run', jobId: missing, host: 'sandbox', exitCode: 205 });
    expect(refusal.error.message).toMatch(/^gateway refused 'status': E_NOJOB: no job 9999/);
    // The human line stays on stderr for whoever reads the terminal.
    expect(attached.stderr).toContain('E_NOJOB');

    // Before anything is sent: a missing input is an InputError with the job id run printed.
    const run = await runMain(main, ['run', 'sandbox', join(dir, 'no-such-input.dat'), '-o', dir, '--json', '--config', cfg]);
    expect(run.code).toBe(201);
    const input = (JSON.parse(run.stdout) as { error: Record<string, unknown> }).error;
    expect(input).toMatchObject({ code: 'INPUT_INVALID', host: 'sandbox', exitCode: 201, jobId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(run.stderr).toContain(`job ${String(input.jobId)} on sandbox`);

    // A message with a hint: the hint is its own field, not repeated in the message.
    const noHost = await runMain(main, ['run', 'no-such-host.invalid', '--json', '--config', cfg]);
    const unknownHost = (JSON.parse(noHost.stdout) as { error: { message: string; hint?: string; code: string } }).error;
    expect(noHost.code).toBe(exitFor(unknownHost.code));
    expect(unknownHost.hint).toBeTruthy();
    expect(unknownHost.message).not.toContain(unknownHost.hint);

    // jobs, cancel and rm answer --json the same way on failure (they printed nothing on stdout).
    const cancelMissing = await runMain(main, ['cancel', 'sandbox', missing, '--json', '--config', cfg]);
    expect(cancelMissing.code).toBe(205);
    expect((JSON.parse(cancelMissing.stdout) as { error: Record<string, unknown> }).error).toMatchObject({ code: 'GATEWAY_REFUSED', gatewayCode: 'E_NOJOB', host: 'sandbox', exitCode: 205 });
    const rmBad = await runMain(main, ['rm', 'sandbox', 'not-a-uuid', '--json', '--config', cfg]);
    expect(rmBad.code).toBe(201);
    expect((JSON.parse(rmBad.stdout) as { error: Record<string, unknown> }).error).toMatchObject({ code: 'INPUT_INVALID', exitCode: 201 });
    const jobsNoHost = await runMain(main, ['jobs', 'no-such-host.invalid', '--json', '--config', cfg]);
    expect(jobsNoHost.code).toBe(exitFor((JSON.parse(jobsNoHost.stdout) as { error: { code: string } }).error.code));

    // Success keeps the result object.
    const ok = await runMain(main, ['run', 'sandbox', '-o', dir, '--json', '--config', cfg]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ state: 'exited', exitCode: 0 });
  });

  it('rm HOST JOB removes a finished job; a running one is refused (cancel first); a missing one is a no-op that says so', async () => {
    const dir = await freshDir();
    const cfg = await config();
    const failed = await runMain(main, ['run', 'sandbox', '--json', '-o', dir, '--arg', 'fail', '--config', cfg]);
    const jobId = (JSON.parse(failed.stdout) as { jobId: string }).jobId;
    expect(existsSync(join(sandbox().root, jobId))).toBe(true);
    const removed = await runMain(main, ['rm', 'sandbox', jobId, '--config', cfg]);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toBe(`${jobId}  removed (was exited, exit 5)\n`);
    expect(existsSync(join(sandbox().root, jobId))).toBe(false);
    const again = await runMain(main, ['rm', 'sandbox', jobId, '--json', '--config', cfg]);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual({ host: 'sandbox', jobId, removed: false });

    const controller = new AbortController();
    const slowId = '22222222-3333-4444-8555-666666666666';
    const running = runMain(main, ['run', 'sandbox', '--job-id', slowId, '-o', dir, '--arg', 'slow', '--config', cfg], process.env, controller.signal);
    await waitFor(() => existsSync(join(sandbox().root, slowId, 'pid')));
    const refused = await runMain(main, ['rm', 'sandbox', slowId, '--config', cfg]);
    expect(refused.code).toBe(205);
    expect(refused.stderr).toMatch(/E_STATE: job 2222\S+ is running; cancel it first/);
    expect(existsSync(join(sandbox().root, slowId, 'pid'))).toBe(true);
    controller.abort();
    expect((await running).code).toBe(207);
    expect((await runMain(main, ['rm', 'sandbox', 'not-a-uuid', '--config', cfg])).code).toBe(201);
  });

  it('jobs shows each job\'s age and size (du -sk of its dir on the site), and a protocol-1 gateway is named as such (upgrade it)', async () => {
    const dir = await freshDir();
    const cfg = await config();
    await writeFile(join(dir, 'big.dat'), Buffer.alloc(3 * 1024 * 1024, 7));
    const kept = await runMain(main, ['run', 'sandbox', '--json', '-o', join(dir, 'out'), '--cleanup', 'never', join(dir, 'big.dat'), '--config', cfg]);
    const jobId = (JSON.parse(kept.stdout) as { jobId: string }).jobId;
    // Two hours idle, as far as the site can tell (the job dir's mtime is what --max-age-days counts).
    const old = new Date(Date.now() - 2 * 3600 * 1000);
    await utimes(join(sandbox().root, jobId), old, old);
    const json = JSON.parse((await runMain(main, ['jobs', 'sandbox', '--json', '--config', cfg])).stdout) as { jobs: { jobId: string; sizeKiB: number; ageSeconds: number }[] };
    const job = json.jobs.find((j) => j.jobId === jobId)!;
    expect(job.sizeKiB).toBeGreaterThanOrEqual(3 * 1024);
    expect(job.sizeKiB).toBeLessThan(4 * 1024);
    expect(job.ageSeconds).toBeGreaterThanOrEqual(7200);
    expect(job.ageSeconds).toBeLessThan(7300);
    const human = await runMain(main, ['jobs', 'sandbox', '--config', cfg]);
    expect(human.stdout).toMatch(new RegExp(`^${jobId}  exited \\(exit 0\\)  +2h0m  +3\\.\\d MiB$`, 'm'));

    // A protocol-1 gateway (before `list long`, daemon-mode downloads and `queued`) refuses the
    // argument (E_USAGE): the client asks its protocol and says which side to upgrade, where it
    // used to quote the usage line (or, at take, fail after the job had run).
    const gateway = await readFile(sandbox().gatewayPath, 'utf8');
    // The check stage as it was: `probe | list) mgw_expect_args 0 0 "no arguments" ;;`.
    const older = gateway
      .replace(/^MGW_PROTOCOL=2$/m, 'MGW_PROTOCOL=1')
      .replace(/^ {4}list\)\n(?: {6}[^\n]*\n)+/m, '')
      .replace('    probe) mgw_expect_args 0 0 "no arguments" ;;', '    probe | list) mgw_expect_args 0 0 "no arguments" ;;')
      // ...and whose get and take took JOB CAPS (a plain rsync sender, before daemon mode)...
      .replace('mgw_expect_args 1 2 "JOB [CAPS]"', 'mgw_expect_args 2 2 "JOB CAPS"')
      // ...and which had no inline verbs (putx, takex, jobx: unknown verbs to it).
      .replace('    putx | takex)\n', '    no-putx | no-takex)\n')
      .replace('    jobx)\n      mgw_expect_args', '    no-jobx)\n      mgw_expect_args');
    expect(older).toContain('probe | list) mgw_expect_args 0 0');
    expect(older).toContain('MGW_PROTOCOL=1');
    expect(older).toContain('mgw_expect_args 2 2 "JOB CAPS"');
    expect(older).toContain('no-putx | no-takex)');
    expect(older).toContain('no-jobx)');
    await writeFile(sandbox().gatewayPath, older);
    try {
      const olderJobs = await runMain(main, ['jobs', 'sandbox', '--config', cfg]);
      expect(olderJobs.code).toBe(205);
      expect(olderJobs.stderr).toMatch(/gateway speaks protocol 1 .*this client speaks 2/);
      expect(olderJobs.stderr).toMatch(/upgrade the gateway on the external computer/);
      // At take, after the job ran: the same answer, and the job stays for a client that fits.
      const ran = await runMain(main, ['run', 'sandbox', '--json', '-o', join(dir, 'out2'), '--config', cfg]);
      expect(ran.code).toBe(205);
      const error = (JSON.parse(ran.stdout) as { error: { code: string; step: string; hint: string } }).error;
      expect(error).toMatchObject({ code: 'GATEWAY_INCOMPATIBLE', step: 'download' });
      expect(error.hint).toMatch(/upgrade the gateway/);
    } finally {
      await writeFile(sandbox().gatewayPath, gateway);
    }
  });

  it('run: result.files lists every file of the output, also those an earlier run already brought (unchanged, so rsync sent nothing)', async () => {
    const dir = await freshDir();
    const cfg = await config();
    await writeFile(join(dir, 'in.dat'), 'same input\n');
    const out = join(dir, 'out');
    const first = JSON.parse((await runMain(main, ['run', 'sandbox', '--json', '-o', out, join(dir, 'in.dat'), '--config', cfg])).stdout) as { files: string[] };
    expect(first.files.sort()).toEqual(['in.dat', 'out.txt']);
    // in.dat comes back with the mtime it went with: the same size and time as the copy already in out/.
    const second = JSON.parse((await runMain(main, ['run', 'sandbox', '--json', '-o', out, join(dir, 'in.dat'), '--config', cfg])).stdout) as { files: string[] };
    expect(second.files.sort()).toEqual(['in.dat', 'out.txt']);
  });

  it('usage errors exit 2 and configuration errors name the file and line', async () => {
    expect((await runMain(main, ['run'])).code).toBe(2);
    expect((await runMain(main, ['frobnicate'])).code).toBe(2);
    const dir = await freshDir();
    const bad = join(dir, 'hosts.yaml');
    await writeFile(bad, 'hosts:\n  x:\n    port: fifty\n');
    const r = await runMain(main, ['probe', 'x', '--config', bad]);
    expect(r.code).toBe(10);
    expect(r.stdout).toContain('hosts.yaml:3:11');
    const run = await runMain(main, ['run', 'x', '--config', bad]);
    expect(run.code).toBe(200);
    expect(run.stderr).toMatch(/hosts\.yaml:3:11: hosts\.x\.port/);
  });
});

async function waitFor(check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function exitFor(code: string): number {
  return ({ CONFIG_INVALID: 200, HOST_UNREACHABLE: 202 } as Record<string, number>)[code] ?? -1;
}
