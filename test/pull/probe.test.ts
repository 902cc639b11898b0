/**
 * Pull mode from the MInt side's tools (issue 18): `probe` of a pull host, and the CLI's `run`,
 * `jobs`, `attach`, `cancel` and `rm` against a pull sandbox (a real hub process, a real agent
 * process running the real gateway script). Also: a job's resources reach the site's gateway, which
 * holds them to its maxima (E_LIMIT) as over SSH.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError, probeHost, runRemote } from '../../src/index.js';
import { main } from '../../src/cli/mint-ssh-exec.js';
import { PROBE_EXIT } from '../../src/probe/probe.js';
import { startPullSandbox, type PullSandbox } from '../../src/sandbox/pull.js';
import { runMain } from '../support/cli-io.js';
import { freshDir, sha256 } from '../support/fixture.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'bin', 'mint-ssh-exec.mjs');

/** The program: prints its args (unless $2 is quiet), sleeps $1 seconds, leaves a result. */
const SLOW = `#!/bin/sh
[ "$2" = quiet ] || echo "start $*"
sleep "\${1:-0}"
echo done > out.txt
echo end
`;

function yaml(hosts: Record<string, Record<string, string>>): string {
  return `hosts:\n${Object.entries(hosts)
    .map(([name, fields]) => `  ${name}:\n${Object.entries(fields).map(([k, v]) => `    ${k}: ${v}\n`).join('')}`)
    .join('')}`;
}

describe('pull mode: probe, CLI, resources', () => {
  let dir: string;
  let sandbox: PullSandbox;
  let config: string;

  beforeAll(async () => {
    expect(existsSync(join(ROOT, 'dist', 'bundle', 'load.cjs')), 'build first: npm run build').toBe(true);
    dir = await freshDir();
    const program = join(dir, 'slow.sh');
    await writeFile(program, SLOW);
    await chmod(program, 0o755);
    sandbox = await startPullSandbox({ program, baseDir: dir });
    config = join(dir, 'hosts.yaml');
    await writeFile(config, sandbox.profileYaml());
  }, 60_000);

  afterAll(async () => {
    await sandbox?.stop();
  });

  it('probe of a pull host: hub reached, its TLS identity checked, token and site accepted, the agent connected, its gateway facts', async () => {
    const r = await runMain(main, ['probe', 'sandbox', '--config', config]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('verdict: READY');
    const result = await probeHost(sandbox.host);
    expect(result.ok).toBe(true);
    expect(result.steps.map((s) => s.step)).toEqual(['config', 'reach', 'tls', 'auth', 'site', 'agent', 'gateway', 'rsync-remote', 'program', 'job-root', 'resources', 'latency']);
    const step = (name: string): string => result.steps.find((s) => s.step === name)!.detail;
    expect(step('tls')).toMatch(/certificate CN=localhost .* issued by CN=mint-ssh-exec hub CA, valid until .*, SHA-256 [0-9A-F:]{95}; trusted through hubCa /);
    expect(step('agent')).toMatch(/^connected: its long-poll is open at the hub now \(agent mint-ssh-exec \d+\.\d+\.\d+\)/);
    expect(step('program')).toContain(sandbox.program);
    expect(step('job-root')).toContain(sandbox.root);
    expect(result.agent).toMatchObject({ connected: true, version: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    expect(result.gateway?.protocol).toBe(2);
    expect(result.resources?.cpus).toBeGreaterThan(0);
    expect(result.latency?.tlsConnectMs).toBeGreaterThan(0);
  }, 30_000);

  it('probe names what is wrong, with typed errors and each its exit code: no hub there, an untrusted certificate, a bad token, an unknown or revoked site, no agent', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer();
      s.listen(0, '127.0.0.1', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    const badToken = join(dir, 'bad.token');
    await writeFile(badToken, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
    // A site the hub knows, whose agent never came; a site it revoked.
    const cli = (args: string[]): Promise<string> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}`))));
      });
    await cli(['hub', 'add-site', 'lonely', '--data', sandbox.data]);
    await cli(['hub', 'add-site', 'gone', '--data', sandbox.data]);
    await cli(['hub', 'revoke-site', 'gone', '--data', sandbox.data]);
    const base = { mode: 'pull', hub: sandbox.hub, site: 'sandbox', hubTokenFile: sandbox.submitTokenFile, hubCa: sandbox.ca };
    const { hubCa: _ca, ...noCa } = base;
    const hosts = {
      nohub: { ...base, hub: `https://127.0.0.1:${closed}` },
      untrusted: noCa,
      badtoken: { ...base, hubTokenFile: badToken },
      nosite: { ...base, site: 'nosuch' },
      revoked: { ...base, site: 'gone' },
      noagent: { ...base, site: 'lonely' },
    };
    const file = join(dir, 'broken.yaml');
    await writeFile(file, yaml(hosts));
    const expected: Record<keyof typeof hosts, { step: string; code: string; text: RegExp }> = {
      nohub: { step: 'reach', code: 'HOST_UNREACHABLE', text: /ECONNREFUSED|refused/ },
      untrusted: { step: 'tls', code: 'AUTH_FAILED', text: /is not trusted here/ },
      badtoken: { step: 'auth', code: 'AUTH_FAILED', text: /refused the token/ },
      nosite: { step: 'site', code: 'GATEWAY_REFUSED', text: /no site nosuch/ },
      revoked: { step: 'site', code: 'GATEWAY_REFUSED', text: /no site gone/ },
      noagent: { step: 'agent', code: '', text: /no agent of site lonely has called the hub/ },
    };
    for (const [name, want] of Object.entries(expected)) {
      const result = await probeHost(name, { configFile: file });
      const failed = result.steps.find((s) => !s.ok);
      expect(result.ok, name).toBe(false);
      expect(failed?.step, `${name}: ${JSON.stringify(result.steps)}`).toBe(want.step);
      if (want.code) expect(failed?.errorCode, name).toBe(want.code);
      expect(failed?.detail, name).toMatch(want.text);
      expect(failed?.hint, name).toBeTruthy();
      const r = await runMain(main, ['probe', name, '--config', file]);
      expect(r.code, name).toBe(PROBE_EXIT[want.step as keyof typeof PROBE_EXIT]);
      expect(r.stdout).toContain(`verdict: NOT READY (failed at ${want.step})`);
    }
  }, 60_000);

  it('run, jobs, attach, cancel and rm work on a pull host as on an SSH one', async () => {
    const out = join(dir, 'cli-out');
    const input = join(dir, 'input.dat');
    await writeFile(input, randomBytes(100_000));
    const ok = await runMain(main, ['run', 'sandbox', input, '--arg', '0', '-o', out, '--config', config]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await sha256(join(out, 'input.dat'))).toBe(await sha256(input));
    expect((await readFile(join(out, 'out.txt'), 'utf8')).trim()).toBe('done');

    // A run whose client dies mid-job (SIGKILL: no cancel sent), then attach from another process.
    const left = randomUUID();
    const doomed = randomUUID();
    for (const [jobId, seconds] of [[left, '4'], [doomed, '60']] as const) {
      const child = spawn(process.execPath, [CLI, 'run', 'sandbox', '--arg', seconds, '--job-id', jobId, '-o', join(dir, jobId), '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      const deadline = Date.now() + 20_000;
      while (!text.includes(`start ${seconds}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(text).toContain(`start ${seconds}`);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('close', r));
    }
    const jobs = await runMain(main, ['jobs', 'sandbox', '--json', '--config', config]);
    expect(jobs.code).toBe(0);
    const listed = (JSON.parse(jobs.stdout) as { jobs: { jobId: string; state: string }[] }).jobs;
    expect(listed).toEqual(expect.arrayContaining([expect.objectContaining({ jobId: left, state: 'running' }), expect.objectContaining({ jobId: doomed, state: 'running' })]));

    const attached = await runMain(main, ['attach', 'sandbox', left, '-o', join(dir, left), '--config', config]);
    expect(attached.code, attached.stderr).toBe(0);
    expect(attached.stdout).toContain('end');
    expect((await readFile(join(dir, left, 'out.txt'), 'utf8')).trim()).toBe('done');

    // A running job is not removed under its program (as over SSH: exit 205, E_STATE).
    const busy = await runMain(main, ['rm', 'sandbox', doomed, '--json', '--config', config]);
    expect(busy.code).toBe(205);
    expect(JSON.parse(busy.stdout)).toMatchObject({ error: { gatewayCode: 'E_STATE' } });

    const t = Date.now();
    const cancelled = await runMain(main, ['cancel', 'sandbox', doomed, '--json', '--config', config]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ jobId: doomed, state: 'cancelled' });
    expect(Date.now() - t).toBeLessThan(10_000);
    const after = await runMain(main, ['attach', 'sandbox', doomed, '-o', join(dir, doomed), '--config', config]);
    expect(after.code).toBe(207);

    const removed = await runMain(main, ['rm', 'sandbox', doomed, '--json', '--config', config]);
    expect(removed.code, removed.stderr).toBe(0);
    expect(JSON.parse(removed.stdout)).toMatchObject({ removed: true, state: 'cancelled' });
    const now = await runMain(main, ['jobs', 'sandbox', '--json', '--config', config]);
    const ids = (JSON.parse(now.stdout) as { jobs: { jobId: string }[] }).jobs.map((j) => j.jobId);
    expect(ids).not.toContain(doomed);
    expect(ids).not.toContain(left); // attach cleaned up on success
  }, 120_000);

  it("the 'started' event comes when the program starts, not with its first output or its end", async () => {
    let startedAt = 0;
    let firstLogAt = 0;
    const result = await runRemote({
      host: sandbox.host,
      args: ['4', 'quiet'],
      outputDir: join(dir, 'quiet'),
      onEvent: (e) => {
        if (e.type === 'started' && !startedAt) startedAt = performance.now();
        if (e.type === 'log' && !firstLogAt) firstLogAt = performance.now();
      },
    });
    expect(result.exitCode).toBe(0);
    expect(result.log).toBe('end\n');
    // The program sleeps 4 s before its first byte: a start seen only with the log would come with it.
    expect(startedAt).toBeGreaterThan(0);
    expect(firstLogAt - startedAt).toBeGreaterThan(3000);
  }, 60_000);

  it("an agent whose gateway refuses its site options stops at start (exit 200, the gateway's reason) and takes no job", async () => {
    const token = join(dir, 'agent-check.token');
    await writeFile(token, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [CLI, 'agent', '--hub', sandbox.hub, '--site', 'sandbox', '--token-file', token, '--ca', sandbox.ca, '--root', join(dir, 'no-such-root'), '--program', sandbox.program], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(r.code).toBe(200);
    expect(r.stderr).toMatch(/the gateway refuses this agent's site options: E_CONFIG: job root .*no-such-root does not exist/);
    // It never called the hub (its token is not even valid there): no "polling", no retry.
    expect(r.stderr).not.toMatch(/polling|retrying/);
  }, 30_000);

  it("a job's resources reach the site's gateway: refused where the site has no scheduler (E_USAGE), held to the site's maxima (E_LIMIT)", async () => {
    await expect(runRemote({ host: sandbox.host, args: ['0'], outputDir: join(dir, 'res1'), resources: { cpus: 1 } })).rejects.toMatchObject({
      constructor: GatewayError,
      code: 'GATEWAY_REFUSED',
      gatewayCode: 'E_USAGE',
      message: expect.stringContaining('without a batch scheduler'),
    });
    // A site whose gateway sends jobs to Slurm with a maximum of 2 CPUs: 4 is refused before sbatch is asked.
    const limited = await startPullSandbox({ baseDir: dir, agentArgs: ['--scheduler', 'slurm', '--max-cpus', '2'] });
    try {
      await expect(runRemote({ host: limited.host, args: ['x'], outputDir: join(dir, 'res2'), resources: { cpus: 4 } })).rejects.toMatchObject({
        constructor: GatewayError,
        gatewayCode: 'E_LIMIT',
        message: expect.stringContaining('cpus 4 is over the site maximum of 2'),
      });
      const probe = await probeHost(limited.host);
      expect(probe.scheduler).toMatchObject({ type: 'slurm', maxima: { cpus: 2 } });
    } finally {
      await limited.stop();
    }
  }, 60_000);
});
