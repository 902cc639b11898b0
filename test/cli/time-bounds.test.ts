/**
 * Issue 14, items 7, 8 and 9 through the CLI, as a user meets them: a mistyped profile name given to
 * probe, `run --timeout` against a host that is down, and a port that accepts but never speaks SSH.
 * No sshd is needed: each host here is one that cannot answer.
 */
import net from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/mint-ssh-exec.js';
import { freshDir } from '../support/fixture.js';
import { runMain } from '../support/cli-io.js';

/** A port nothing listens on (bound, then closed): connections to it are refused. */
async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

describe('time on the failure paths, through the CLI', () => {
  // Accepts every connection and never writes a byte: no SSH banner, ever.
  const silent = net.createServer(() => undefined);
  let silentPort = 0;
  let downPort = 0;
  let config = '';

  beforeAll(async () => {
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    silentPort = (silent.address() as net.AddressInfo).port;
    downPort = await closedPort();
    const dir = await freshDir();
    config = join(dir, 'hosts.yaml');
    await writeFile(
      config,
      [
        'hosts:',
        '  calc-site:',
        '    hostname: 127.0.0.1',
        `    port: ${downPort}`,
        '    sshConfig: false',
        '  mute:',
        '    hostname: 127.0.0.1',
        `    port: ${silentPort}`,
        '    connectTimeoutMs: 1000',
        '    sshConfig: false',
        '',
      ].join('\n'),
    );
  });
  afterAll(() => {
    silent.close();
  });

  it('probe of a name that is neither a profile nor an ssh_config alias warns, then fails with the profiles named', async () => {
    const started = Date.now();
    const r = await runMain(main, ['probe', 'calc-sit.invalid', '--config', config]);
    // Not `[ ok ] config`: a warning that the name is tried as a host name.
    expect(r.stdout).not.toMatch(/\[ ok \] config/);
    expect(r.stdout).toMatch(/\[warn\] config .*\n.*note: no profile or ~\/\.ssh\/config alias is named "calc-sit\.invalid": trying calc-sit\.invalid as a host name/);
    expect(r.stdout).toMatch(/\[FAIL\] reach +cannot resolve host name calc-sit\.invalid/);
    expect(r.stdout).toMatch(/fix: "calc-sit\.invalid" is neither a profile nor an ~\/\.ssh\/config alias, and no host has that name: a typo\? the profiles are: calc-site, mute/);
    expect(r.code).toBe(11);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('probe of a real profile still says `[ ok ] config`', async () => {
    const r = await runMain(main, ['probe', 'calc-site', '--config', config]);
    expect(r.stdout).toMatch(/\[ ok \] config/);
    expect(r.stdout).not.toContain('trying');
  });

  it('run --timeout 1.5 against a host that is down ends within 3 s as a cancel (exit 207)', async () => {
    const out = await freshDir();
    const started = Date.now();
    const r = await runMain(main, ['run', 'calc-site', '--timeout', '1.5', '-o', out, '--config', config]);
    const took = Date.now() - started;
    // It took 12.5 s: the cleanup after the cancel retried against the dead host.
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(3000);
    expect(r.code).toBe(207);
    expect(r.stderr).toMatch(/job timed out after 1500 ms/);
  });

  it('probe of a port that accepts and never speaks fails at the banner within the connect timeout, with the fix', async () => {
    const started = Date.now();
    const r = await runMain(main, ['probe', 'mute', '--config', config]);
    const took = Date.now() - started;
    expect(r.stdout).toMatch(/\[ ok \] reach/);
    expect(r.stdout).toMatch(new RegExp(`\\[FAIL\\] banner +127\\.0\\.0\\.1:${silentPort} accepted the connection but never sent an SSH banner \\(waited 1000 ms in all\\)`));
    expect(r.stdout).toMatch(new RegExp(`fix: 127\\.0\\.0\\.1:${silentPort} does not speak SSH: check Port and HostName for mute`));
    expect(r.code).toBe(12);
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(3000);
  });

  it('run against that port fails once, typed, within the connect timeout (not retried: it took 134 s at the default)', async () => {
    const out = await freshDir();
    const started = Date.now();
    const r = await runMain(main, ['run', 'mute', '-o', out, '--config', config]);
    const took = Date.now() - started;
    expect(r.code).toBe(202);
    expect(r.stderr).toMatch(/accepted the connection but never sent an SSH banner/);
    expect(r.stderr).not.toMatch(/retrying/);
    expect(took).toBeLessThan(3000);
  });
});
