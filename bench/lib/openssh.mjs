// The OpenSSH side of every comparison: the system ssh and rsync, with a key that is NOT pinned to
// the gateway, against the same sshd binary and config the MInt key talks to. Same cipher and key
// exchange as ssh2 negotiates for us, so the comparison is like for like.
import { readFileSync } from 'node:fs';
import { run, pidAlive } from './proc.mjs';

/** Only a pid whose command line names our control socket is ours to signal. */
function isOurMaster(pid, controlPath) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(controlPath);
  } catch {
    return false;
  }
}

export const CIPHER = 'aes128-gcm@openssh.com';
// ssh2 offers curve25519-sha256@libssh.org first; OpenSSH 9's default (sntrup761x25519) costs
// ~70 ms more per handshake on this machine, which would flatter us.
export const KEX = 'curve25519-sha256@libssh.org,curve25519-sha256';

export class OpenSsh {
  /**
   * @param {{ user: string, port: number, key: string, knownHosts: string, kex?: string }} target
   * kex: 'default' leaves OpenSSH's own choice (sntrup761x25519 on OpenSSH 9), for the B1 row that
   * shows what MInt's scripts really get.
   */
  constructor(target) {
    this.target = target;
    this.dest = `${target.user}@127.0.0.1`;
  }

  baseArgs() {
    const t = this.target;
    return [
      '-F', '/dev/null',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', `UserKnownHostsFile=${t.knownHosts}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'UpdateHostKeys=no',
      '-o', 'BatchMode=yes',
      '-o', 'IdentitiesOnly=yes',
      '-o', 'IdentityAgent=none',
      '-o', 'LogLevel=ERROR',
      ...(t.kex === 'default' ? [] : ['-o', `KexAlgorithms=${t.kex ?? KEX}`]),
      '-c', CIPHER,
      '-i', t.key,
      '-p', String(t.port),
    ];
  }

  /** `ssh [extra] user@127.0.0.1 COMMAND` */
  ssh(command, extra = [], options = {}) {
    return run('ssh', [...this.baseArgs(), ...extra, this.dest, command], options);
  }

  /** The -e value for rsync (rsync splits it on spaces: every path here is space-free). */
  rsh(extra = []) {
    const words = ['ssh', ...this.baseArgs(), ...extra];
    for (const w of words) if (/\s/.test(w)) throw new Error(`path with whitespace cannot go into rsync -e: ${w}`);
    return words.join(' ');
  }

  rsync(args, extra = [], options = {}) {
    return run('rsync', ['-e', this.rsh(extra), ...args], options);
  }

  remote(path) {
    return `${this.dest}:${path}`;
  }

  /** ssh options that share one master connection (created by the first command that needs it). */
  static controlOptions(controlPath, persistSeconds = 30) {
    return ['-o', 'ControlMaster=auto', '-o', `ControlPath=${controlPath}`, '-o', `ControlPersist=${persistSeconds}`];
  }

  /** The master's pid, or undefined when none is running. */
  async masterPid(controlPath) {
    const r = await this.ssh('true', ['-o', `ControlPath=${controlPath}`, '-O', 'check'], { check: false, timeoutMs: 10_000 });
    const m = /pid=(\d+)/.exec(r.stderr + r.stdout);
    return m ? Number(m[1]) : undefined;
  }

  /** Opens a persistent master (forks into the background; ControlPersist bounds its idle life). */
  async openMaster(controlPath, persistSeconds = 30) {
    await this.ssh('true', OpenSsh.controlOptions(controlPath, persistSeconds), { timeoutMs: 30_000 });
    return this.masterPid(controlPath);
  }

  /** Stops a master by control command, then by its pid if it is still there. */
  async closeMaster(controlPath, knownPid) {
    const pid = knownPid ?? (await this.masterPid(controlPath).catch(() => undefined));
    await this.ssh('true', ['-o', `ControlPath=${controlPath}`, '-O', 'exit'], { check: false, timeoutMs: 10_000 }).catch(() => undefined);
    if (pid && pidAlive(pid) && isOurMaster(pid, controlPath)) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
  }
}
