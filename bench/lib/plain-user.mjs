// --plain-shell-user: a throwaway account whose login shell is /bin/sh (what our docs ask sites to
// use for MInt's account), served by a second private sshd on 127.0.0.1 with the same settings as
// the sandbox's. Both the gateway key and an unrestricted key (for the OpenSSH anchors) are in its
// authorized_keys. Needs root and useradd; everything is removed again by stop() (userdel -r).
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, chmod, copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { load } from './mint.mjs';
import { pidAlive, run, sleep, startChild, stopChild } from './proc.mjs';

function findSshd() {
  return ['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/sbin/sshd'].find((p) => existsSync(p));
}

export function plainUserSupported() {
  if (process.getuid?.() !== 0) return 'not running as root';
  for (const tool of ['useradd', 'userdel']) {
    if (!['/usr/sbin', '/sbin', '/usr/bin', '/bin'].some((d) => existsSync(join(d, tool)))) return `${tool} not found`;
  }
  if (!existsSync('/bin/sh')) return '/bin/sh not found';
  if (!findSshd()) return 'sshd not found';
  return undefined;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(address.port));
    });
  });
}

async function waitForBanner(port, child, stderr) {
  const { readBanner } = await load();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`sshd exited at start: ${stderr().slice(-300)}`);
    if ((await readBanner(port)).startsWith('SSH-2.0-')) return;
    await sleep(50);
  }
  throw new Error(`sshd did not answer on 127.0.0.1:${port} within 10 s`);
}

/**
 * @param {{ workDir: string, program: string, log: (s: string) => void }} options
 * workDir: a root-owned 0700 dir for the client keys and the sshd's own files.
 */
export async function startPlainUser({ workDir, program, log }) {
  const m = await load();
  const name = `mintb${randomBytes(4).toString('hex')}`;
  const home = `/home/${name}`;
  let created = false;
  let sshd;
  const sshdDir = join(workDir, `plain-sshd-${name}`);
  const jobs = join(home, 'mint-jobs');

  const stop = async () => {
    // The gateway's detached runners: kill their process groups by the pids it recorded.
    for (const entry of await readdir(jobs).catch(() => [])) {
      const pid = Number((await readFile(join(jobs, entry, 'pid'), 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 1) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    if (sshd) await stopChild(sshd.child);
    if (created) {
      // Anything else still running as the throwaway account was started by this bench: by pid.
      const ps = await run('ps', ['-o', 'pid=', '-u', name], { check: false, timeoutMs: 10_000 }).catch(() => ({ stdout: '' }));
      for (const pid of ps.stdout.split(/\s+/).filter(Boolean).map(Number)) {
        if (pid > 1 && pidAlive(pid)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
      await sleep(100);
      const del = await run('userdel', ['-r', name], { check: false, timeoutMs: 30_000 });
      // userdel -r warns (exit 12) when the mail spool is missing; the account is gone all the same.
      if (del.code !== 0 && del.code !== 12) log(`userdel -r ${name} exited ${del.code}: ${del.stderr.trim()}`);
      await rm(home, { recursive: true, force: true });
    }
    await rm(sshdDir, { recursive: true, force: true });
  };

  try {
    // -p '*': no password, but not a *locked* account (sshd without PAM refuses locked ones).
    await run('useradd', ['-m', '-d', home, '-s', '/bin/sh', '-p', '*', '-c', 'mint-ssh-exec bench (throwaway)', name], { timeoutMs: 30_000 });
    created = true;
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());

    await mkdir(sshdDir, { mode: 0o700 });
    const hostKey = join(sshdDir, 'host_ed25519');
    const clientKey = join(sshdDir, 'mint_ed25519');
    const plainKey = join(sshdDir, 'plain_ed25519');
    for (const [path, comment] of [[hostKey, 'plain-host'], [clientKey, 'mint-bench'], [plainKey, 'bench-openssh-anchor']]) {
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path], { stdio: 'pipe' });
    }

    const base = join(home, '.mint-bench');
    const userProgram = join(base, 'program.sh');
    const gatewayPath = join(base, 'mint-gateway.sh');
    const authorizedKeys = join(base, 'authorized_keys');
    const anchorRoot = join(home, 'anchor');
    await mkdir(base, { recursive: true, mode: 0o700 });
    await mkdir(anchorRoot, { recursive: true, mode: 0o700 });
    await copyFile(program, userProgram);
    await chmod(userProgram, 0o755);
    await m.installGateway({
      publicKey: await readFile(`${clientKey}.pub`, 'utf8'),
      gatewayPath,
      authorizedKeys,
      gateway: { keyName: 'mint-bench', root: jobs, program: userProgram },
    });
    await appendFile(authorizedKeys, await readFile(`${plainKey}.pub`, 'utf8'));
    await run('chown', ['-R', `${uid}:${gid}`, home], { timeoutMs: 30_000 });

    const port = await freePort();
    const config = join(sshdDir, 'sshd_config');
    // The sandbox's own settings (src/sandbox/sandbox.ts), for this account.
    const { sshdConfig } = await load();
    await writeFile(config, sshdConfig({ port, hostKey, authorizedKeys, user: name, pidFile: join(sshdDir, 'sshd.pid') }));
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    const logFile = join(sshdDir, 'sshd.log');
    sshd = startChild(findSshd(), ['-D', '-f', config, '-E', logFile]);
    await waitForBanner(port, sshd.child, sshd.stderr);

    const hostPub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/);
    const knownHosts = join(sshdDir, 'known_hosts');
    await writeFile(knownHosts, `[127.0.0.1]:${port} ${hostPub[0]} ${hostPub[1]}\n`, { mode: 0o600 });
    return {
      user: name,
      port,
      clientKey,
      plainKey,
      knownHosts,
      anchorRoot,
      program: userProgram,
      root: jobs,
      gatewayPath,
      host: {
        name: 'plain-shell-user',
        hostname: '127.0.0.1',
        port,
        user: name,
        identityFile: clientKey,
        knownHostsFile: knownHosts,
        agent: false,
        sshConfig: false,
      },
      sshdLog: () => readFile(logFile, 'utf8').catch(() => ''),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
