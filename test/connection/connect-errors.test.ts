import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import net from 'node:net';
import { probeHost, runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';

describe('connection failures are typed errors with a hint, never ssh2 internals', () => {
  const sandbox = useSandbox();

  it('refuses an unknown host key and says how to add it', async () => {
    const dir = await freshDir();
    const emptyKnownHosts = join(dir, 'known_hosts');
    await writeFile(emptyKnownHosts, '');
    const events: string[] = [];
    const error = await runRemote({ host: { ...sandbox().host, knownHostsFile: emptyKnownHosts }, outputDir: dir, onEvent: (e) => events.push(e.type) }).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ name: 'HostKeyError', code: 'HOST_KEY_UNKNOWN', retryable: false, step: 'connect' });
    expect(events).toEqual(['connecting']); // never retried
    expect((error as Error).message).toContain(sandbox().hostKeyFingerprint);
    expect((error as Error).message).toContain('ssh-keyscan -p');
  });

  it('accept-new: probe says the key was recorded on first contact, and verified after that', async () => {
    const knownHosts = join(await freshDir(), 'known_hosts');
    await writeFile(knownHosts, '');
    const host = { ...sandbox().host, knownHostsFile: knownHosts, strictHostKeyChecking: 'accept-new' as const };
    delete (host as { hostKeyFingerprint?: unknown }).hostKeyFingerprint;
    const first = await probeHost(host);
    expect(first.steps.find((s) => s.step === 'host-key')?.detail).toMatch(/^host key recorded \(first contact, accept-new\)/);
    const second = await probeHost(host);
    expect(second.steps.find((s) => s.step === 'host-key')?.detail).toBe('host key verified against known_hosts');
  });

  // Issue 14, item 11: OpenSSH writes the new entry hashed under HashKnownHosts yes (Debian's
  // /etc/ssh/ssh_config says so); so do we, and OpenSSH's own ssh-keygen -F must find it.
  it.each([
    ['HashKnownHosts yes', true],
    ['HashKnownHosts no', false],
  ])('accept-new with %s in ssh_config writes the entry hashed: %s', async (setting, hashed) => {
    const dir = await freshDir();
    const knownHosts = join(dir, 'known_hosts');
    const sshConfig = join(dir, 'ssh_config');
    await writeFile(sshConfig, `Host *\n  ${setting}\n`);
    const host = { ...sandbox().host, sshConfig, knownHostsFile: knownHosts, strictHostKeyChecking: 'accept-new' as const };
    delete (host as { hostKeyFingerprint?: unknown }).hostKeyFingerprint;
    const first = await probeHost(host);
    expect(first.steps.find((s) => s.step === 'config')?.detail).toContain('(ssh_config read by ssh -G)');
    expect(first.steps.find((s) => s.step === 'host-key')?.detail).toMatch(/^host key recorded \(first contact/);
    const name = `[127.0.0.1]:${sandbox().port}`;
    const lines = (await readFile(knownHosts, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(1);
    if (hashed) expect(lines[0]).toMatch(/^\|1\|[A-Za-z0-9+/]{27}=\|[A-Za-z0-9+/]{27}= ssh-/);
    else expect(lines[0]!.startsWith(`${name} ssh-`)).toBe(true);
    const found = execFileSync('ssh-keygen', ['-F', name, '-f', knownHosts], { encoding: 'utf8' });
    expect(found).toContain(lines[0]);
    const second = await probeHost(host);
    expect(second.ok).toBe(true);
    expect(second.steps.find((s) => s.step === 'host-key')?.detail).toBe('host key verified against known_hosts');
    expect((await readFile(knownHosts, 'utf8')).trim().split('\n')).toEqual(lines);
  });

  it('probe warns about a CertificateFile from ssh_config that does not exist (it is not offered), instead of ignoring it', async () => {
    const dir = await freshDir();
    const sshConfig = join(dir, 'ssh_config');
    await writeFile(sshConfig, 'Host sandbox\n  CertificateFile ~/.ssh/cert_%h-cert.pub\n');
    const result = await probeHost({ ...sandbox().host, sshConfig });
    const config = result.steps.find((s) => s.step === 'config');
    expect(config?.ok).toBe(true);
    expect(config?.warning).toMatch(/certificate file .*\/\.ssh\/cert_sandbox-cert\.pub: does not exist: not offered/);
  });

  it('refuses a changed host key', async () => {
    const dir = await freshDir();
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'other')]);
    const other = execFileSync('cat', [join(dir, 'other.pub')], { encoding: 'utf8' }).split(' ');
    const knownHosts = join(dir, 'known_hosts');
    await writeFile(knownHosts, `[127.0.0.1]:${sandbox().port} ${other[0]} ${other[1]}\n`);
    const error = await runRemote({ host: { ...sandbox().host, knownHostsFile: knownHosts }, outputDir: dir }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'HOST_KEY_MISMATCH' });
    expect((error as Error).message).toContain('ssh-keygen -R');
  });

  it('accepts a pinned fingerprint instead of known_hosts, and refuses a wrong one', async () => {
    const dir = await freshDir();
    const { knownHostsFile: _unused, ...host } = sandbox().host;
    const ok = await runRemote({ host: { ...host, knownHostsFile: join(dir, 'none'), hostKeyFingerprint: sandbox().hostKeyFingerprint }, outputDir: dir });
    expect(ok.exitCode).toBe(0);
    const wrong = `SHA256:${'A'.repeat(43)}`;
    await expect(runRemote({ host: { ...host, hostKeyFingerprint: wrong }, outputDir: dir })).rejects.toMatchObject({ code: 'HOST_KEY_MISMATCH' });
  });

  it('reports a key the site did not authorize as AUTH_FAILED, naming the key offered', async () => {
    const dir = await freshDir();
    const stranger = join(dir, 'stranger');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stranger]);
    const error = await runRemote({ host: { ...sandbox().host, identityFile: stranger }, outputDir: dir }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'AuthError', code: 'AUTH_FAILED', retryable: false });
    expect((error as Error).message).toContain(stranger);
  });

  it('reports a host that is down as HOST_UNREACHABLE (retryable)', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const dir = await freshDir();
    const events: string[] = [];
    const started = Date.now();
    const error = await runRemote({
      host: { ...sandbox().host, port, retry: { retries: 2, minTimeoutMs: 50, maxTimeoutMs: 100 } },
      outputDir: dir,
      onEvent: (e) => events.push(e.type === 'retrying' ? `retrying:${e.attempt}` : e.type),
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'ConnectError', code: 'HOST_UNREACHABLE', retryable: true });
    expect((error as Error).message).toContain('connection refused');
    // Bounded: the first try and exactly two retries, then the error.
    expect(events).toEqual(['connecting', 'retrying:2', 'connecting', 'retrying:3', 'connecting']);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('fails at once on a host name that does not resolve, with a hint about the name (no retries)', async () => {
    const events: string[] = [];
    const started = Date.now();
    const error = await runRemote({
      host: { ...sandbox().host, hostname: 'no-such-host.invalid' },
      outputDir: await freshDir(),
      onEvent: (e) => events.push(e.type),
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'ConnectError', code: 'HOST_UNREACHABLE', retryable: false });
    expect((error as Error).message).toMatch(/cannot resolve host name no-such-host\.invalid[\s\S]*hint: check the host name "no-such-host\.invalid"/);
    expect(events.filter((e) => e === 'retrying')).toEqual([]);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('fails within connectTimeoutMs on a port that accepts but never sends an SSH banner, once, with a hint naming host:port', async () => {
    const server = net.createServer(() => undefined);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const dir = await freshDir();
    const events: string[] = [];
    const started = Date.now();
    try {
      // The default retry policy: a silent port used to be tried 6 times (134 s at the 20 s default).
      const error = await runRemote({ host: { ...sandbox().host, port, connectTimeoutMs: 1000 }, outputDir: dir, onEvent: (e) => events.push(e.type) }).catch(
        (e: unknown) => e,
      );
      const took = Date.now() - started;
      expect(error).toMatchObject({ name: 'ConnectError', code: 'CONNECT_TIMEOUT', retryable: false, step: 'connect' });
      expect((error as Error).message).toContain(`127.0.0.1:${port} accepted the connection but never sent an SSH banner (waited 1000 ms in all)`);
      expect((error as Error).message).toContain(`hint: 127.0.0.1:${port} does not speak SSH`);
      expect(events).toEqual(['connecting']);
      expect(took).toBeGreaterThanOrEqual(900);
      expect(took).toBeLessThan(3000);
    } finally {
      server.close();
    }
  });

  it('rejects a missing input before connecting', async () => {
    const dir = await freshDir();
    await expect(runRemote({ host: sandbox().host, inputs: [join(dir, 'nope.dat')], outputDir: dir })).rejects.toMatchObject({
      name: 'InputError',
      code: 'INPUT_INVALID',
    });
  });

  it('rejects two inputs that would land on the same name', async () => {
    const dir = await freshDir();
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    execFileSync('mkdir', ['-p', a, b]);
    await writeFile(join(a, 'x.dat'), '1');
    await writeFile(join(b, 'x.dat'), '2');
    await expect(runRemote({ host: sandbox().host, inputs: [join(a, 'x.dat'), join(b, 'x.dat')], outputDir: dir })).rejects.toThrow(/both arrive as "x.dat"/);
  });

  it('goes through a ProxyCommand (as MInt does through its SOCKS proxy)', async () => {
    const dir = await freshDir();
    // A ProxyCommand that only relays bytes, like `nc --proxy ... %h %p` does.
    const relay = `${process.execPath} -e "const s=require('net').connect(+process.argv[2],process.argv[1]);process.stdin.pipe(s);s.pipe(process.stdout)" %h %p`;
    const r = await runRemote({ host: { ...sandbox().host, proxyCommand: relay }, outputDir: dir });
    expect(r.exitCode).toBe(0);
  });
});
