/**
 * A throwaway external computer on this machine: a private OpenSSH sshd on 127.0.0.1 with its own
 * host key, a fresh key pair for the MInt side, and the real gateway installed by the real installer.
 * The demo, the test suite and `mint-ssh-exec sandbox` all use this one implementation.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { SAMPLE_PROGRAM } from '../assets/index.js';
import { SandboxError } from '../errors.js';
import { install, type GatewayOptions, type KeyRestrictions } from '../site/install.js';
import type { InlineHost } from '../config/resolve-host.js';

export { SAMPLE_PROGRAM };

export interface SandboxOptions {
  /** The remote-side program; default the sample from examples/. */
  program?: string;
  /** Listen port; default a free one. */
  port?: number;
  /** Extra gateway options (limits, export list...). */
  gateway?: Partial<Omit<GatewayOptions, 'root' | 'program'>>;
  restrictions?: KeyRestrictions;
  /** Parent of the sandbox's temp dir. */
  baseDir?: string;
  /** Extra sshd_config lines, e.g. `MaxSessions 3`. */
  sshdConfig?: string[];
  /**
   * An existing local account the key logs into, as on a site (its own uid, login shell, PATH and
   * umask; jobs and their files are its own). Needs root. Default: the current user.
   */
  account?: string;
}

export interface Sandbox {
  dir: string;
  port: number;
  user: string;
  /** A host profile for runRemote, probe and run. */
  host: InlineHost & { name: string };
  clientKey: string;
  clientPublicKey: string;
  knownHosts: string;
  hostKeyFingerprint: string;
  authorizedKeys: string;
  gatewayPath: string;
  root: string;
  program: string;
  /** The sandbox as a YAML host profiles file, for --config. */
  profileYaml: () => string;
  /** Reinstall the gateway line with other options (tests of limits and restrictions). */
  reinstall: (gateway: Partial<Omit<GatewayOptions, 'root' | 'program'>>, restrictions?: KeyRestrictions) => Promise<void>;
  sshdLog: () => Promise<string>;
  /** Stops sshd and starts it again on the same port (running jobs are not touched). */
  restartSshd: () => Promise<void>;
  /** The pid of the listening sshd (the one in its PidFile); undefined for the Docker sandbox. */
  sshdPid: () => number | undefined;
  /**
   * Settles when the host stops serving without being told to (its sshd killed, crashed): with what
   * died and how, e.g. `sshd (pid 123) died: killed by SIGKILL`. Stays pending while the host is up
   * and after stop() or restartSshd() (a host that was stopped on purpose did not die).
   */
  died: Promise<string>;
  /** Kills the job processes the sandbox started, stops sshd, removes every file. */
  stop: () => Promise<void>;
}

export function findSshd(): string {
  for (const candidate of ['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/sbin/sshd']) {
    if (existsSync(candidate)) return candidate;
  }
  throw new SandboxError('OpenSSH server (sshd) is not installed', { hint: 'install it: apt-get install -y openssh-server rsync' });
}

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const sshd = findSshd();
  const owner = options.account === undefined ? undefined : accountIds(options.account);
  const dir = await mkdtemp(join(options.baseDir ?? tmpdir(), 'mint-sandbox-'));
  const user = options.account ?? userInfo().username;
  let child: ChildProcess | undefined;
  // The sshd processes we stop ourselves: their exit is not a death.
  const stopping = new WeakSet<ChildProcess>();
  let reportDeath: (what: string) => void = () => undefined;
  const died = new Promise<string>((r) => (reportDeath = r));
  const stop = async (): Promise<void> => {
    if (child) stopping.add(child);
    await killJobs(join(dir, 'jobs'));
    if (child && !ended(child)) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
      if (!ended(child)) child.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const hostKey = join(dir, 'ssh_host_ed25519_key');
    const clientKey = join(dir, 'mint_ed25519');
    keygen(hostKey, 'sandbox-host');
    keygen(clientKey, 'mint-sandbox');
    const clientPublicKey = (await readFile(`${clientKey}.pub`, 'utf8')).trim();

    const root = join(dir, 'jobs');
    const gatewayPath = join(dir, 'gateway', 'mint-gateway.sh');
    const program = await installProgram(dir, options.program);
    const authorizedKeys = join(dir, 'authorized_keys');
    const installLine = async (gateway: Partial<Omit<GatewayOptions, 'root' | 'program'>>, restrictions?: KeyRestrictions): Promise<void> => {
      await install({
        publicKey: clientPublicKey,
        gatewayPath,
        authorizedKeys,
        gateway: { keyName: 'mint-sandbox', ...gateway, root, program },
        ...(restrictions ? { restrictions } : {}),
      });
      if (owner) await handOver(owner);
    };
    // Another account: its job root is its own; the way to the gateway, the program and the
    // authorized_keys file (which sshd reads as that account) must be open to it. The client's
    // private key stays root's (0600).
    const handOver = async (ids: { uid: number; gid: number }): Promise<void> => {
      for (const open of [dir, dirname(gatewayPath), dirname(program)]) await chmod(open, 0o755);
      await chmod(authorizedKeys, 0o644);
      execFileSync('chown', ['-R', `${ids.uid}:${ids.gid}`, root]);
    };
    await installLine(options.gateway ?? {}, options.restrictions);

    // A port that is taken would let another server's banner pass for ours, while our sshd exits
    // at once: say so, before anything starts.
    const port = options.port ?? (await freePort());
    if (options.port !== undefined) await claimPort(options.port);
    const config = join(dir, 'sshd_config');
    await writeFile(config, sshdConfig({ port, hostKey, authorizedKeys, user, pidFile: join(dir, 'sshd.pid') }) + (options.sshdConfig ?? []).map((l) => `${l}\n`).join(''));
    if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    const logFile = join(dir, 'sshd.log');
    const launch = async (): Promise<void> => {
      const started = spawn(sshd, ['-D', '-f', config, '-E', logFile], { stdio: ['ignore', 'ignore', 'pipe'] });
      child = started;
      let stderr = '';
      started.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      await waitForBanner(port, started, () => stderr, logFile);
      // From here its exit is news: a host that stopped serving must not look like one still up
      // (an idle `sandbox` used to exit 0 when its sshd was killed, leaving its private key behind).
      started.once('exit', (code, signal) => {
        if (!stopping.has(started)) reportDeath(`sshd (pid ${started.pid}) died: ${signal ? `killed by ${signal}` : `exited with code ${code}`}`);
      });
    };
    const halt = async (): Promise<void> => {
      const running = child;
      if (!running || ended(running)) return;
      stopping.add(running);
      const exited = new Promise((r) => running.once('exit', r));
      running.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
      if (!ended(running)) running.kill('SIGKILL');
    };
    await launch();

    const hostPub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/);
    const knownHosts = join(dir, 'known_hosts');
    await writeFile(knownHosts, `[127.0.0.1]:${port} ${hostPub[0]} ${hostPub[1]}\n`, { mode: 0o600 });
    const fingerprint = execFileSync('ssh-keygen', ['-l', '-f', `${hostKey}.pub`], { encoding: 'utf8' }).split(/\s+/)[1] ?? '';

    const host = {
      name: 'sandbox',
      hostname: '127.0.0.1',
      port,
      user,
      identityFile: clientKey,
      knownHostsFile: knownHosts,
      agent: false,
      sshConfig: false,
    } satisfies InlineHost & { name: string };
    return {
      dir,
      port,
      user,
      host,
      clientKey,
      clientPublicKey,
      knownHosts,
      hostKeyFingerprint: fingerprint,
      authorizedKeys,
      gatewayPath,
      root,
      program,
      profileYaml: () =>
        [
          'hosts:',
          '  sandbox:',
          '    hostname: 127.0.0.1',
          `    port: ${port}`,
          `    user: ${user}`,
          `    identityFile: ${clientKey}`,
          `    knownHostsFile: ${knownHosts}`,
          '    agent: false',
          '    sshConfig: false',
          '',
        ].join('\n'),
      reinstall: installLine,
      sshdLog: () => readFile(logFile, 'utf8').catch(() => ''),
      restartSshd: async () => {
        await halt();
        await launch();
      },
      sshdPid: () => child?.pid,
      died,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Whether the process has ended. exitCode alone stays null for a process killed by a signal: stop()
 * then sent TERM to a dead sshd and waited its whole 2 s for an exit event that had already fired.
 */
function ended(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** uid and gid of a local account (getent: NSS accounts too), or a SandboxError saying how to make one. */
function accountIds(name: string): { uid: number; gid: number } {
  if (process.getuid?.() !== 0) throw new SandboxError(`a sandbox for the account ${name} needs root (it hands the job root over to it)`);
  let entry: string;
  try {
    entry = execFileSync('getent', ['passwd', name], { encoding: 'utf8' });
  } catch {
    throw new SandboxError(`no local account ${JSON.stringify(name)}`, { hint: `create one, e.g. useradd -m -s /bin/sh -p '*' ${name}` });
  }
  const [, , uid, gid] = entry.trim().split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

function keygen(path: string, comment: string): void {
  try {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path], { stdio: 'pipe' });
  } catch (error) {
    throw new SandboxError(`ssh-keygen failed: ${(error as Error).message}`, { hint: 'install openssh-client', cause: error });
  }
}

/** The sandbox's sshd_config (the bench reuses it for its /bin/sh account). */
export function sshdConfig(c: { port: number; hostKey: string; authorizedKeys: string; user: string; pidFile: string }): string {
  // As close to a site's sshd as a private, unprivileged-port instance allows. StrictModes is off
  // only because the temp dir's parents (/tmp) are world-writable; the gateway makes its own checks.
  return [
    `Port ${c.port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${c.hostKey}`,
    `PidFile ${c.pidFile}`,
    `AuthorizedKeysFile ${c.authorizedKeys}`,
    `AllowUsers ${c.user}`,
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'PermitRootLogin prohibit-password',
    'PermitUserEnvironment no',
    'StrictModes no',
    'PrintMotd no',
    'LogLevel VERBOSE',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

/** Resolves when 127.0.0.1:port can be listened on (and is free again); a SandboxError otherwise. */
function claimPort(port: number): Promise<void> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new SandboxError(`port ${port} on 127.0.0.1 is not free (${error.code ?? error.message})`, { hint: 'choose another --port, or leave it out for a free one' })),
    );
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort()));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

async function waitForBanner(port: number, child: ChildProcess, stderr: () => string, logFile: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (ended(child)) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      throw new SandboxError(`sshd exited at start (${child.signalCode ? `killed by ${child.signalCode}` : `code ${child.exitCode}`}): ${(stderr() + log).trim().slice(-500)}`);
    }
    if ((await readBanner(port)).startsWith('SSH-2.0-')) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new SandboxError(`sshd did not answer on 127.0.0.1:${port} within 10 s`);
}

/** The first bytes a server on 127.0.0.1:port sends (an sshd's identification line), or ''. */
export function readBanner(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    socket.setTimeout(500, () => socket.destroy());
    socket.on('data', (d) => {
      data += d.toString();
      socket.destroy();
    });
    socket.on('error', () => resolve(''));
    socket.on('close', () => resolve(data));
  });
}

/** The remote-side program jobs run, copied into DIR/program (the sample unless `given`): its path. */
export async function installProgram(dir: string, given: string | undefined): Promise<string> {
  const program = join(dir, 'program', 'execute_remote-side_program_ssh.sh');
  await mkdir(join(dir, 'program'), { mode: 0o700 });
  const source = resolve(given ?? SAMPLE_PROGRAM);
  await copyFile(source, program).catch((error: NodeJS.ErrnoException) => {
    throw new SandboxError(`the program ${JSON.stringify(source)} cannot be read (${error.code ?? error.message})`, {
      hint: 'give --program the path of an existing script (the remote-side program jobs run)',
      cause: error,
    });
  });
  await chmod(program, 0o755);
  return program;
}

/** Jobs run detached in their own process groups; stop them so the sandbox leaves nothing behind. */
export async function killJobs(root: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = Number((await readFile(join(root, entry, 'pid'), 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 1) continue;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
