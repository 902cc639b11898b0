/**
 * ssh_config as OpenSSH itself reads it: `ssh -G` prints the options ssh would use for a host after
 * every Host, Match (originalhost, user, exec, canonical ...), Include and system-wide file, without
 * touching the network. Our own parser (ssh-config.ts) covers a subset and stays the fallback when
 * no ssh binary is there.
 *
 * What OpenSSH 9.2 (Debian 12) leaves unexpanded in -G's output, checked by hand and pinned by
 * test/config/conformance.test.ts: IdentityFile, CertificateFile and GlobalKnownHostsFile keep `~`
 * and %-tokens, ProxyCommand keeps its %-tokens; HostName, UserKnownHostsFile and IdentityAgent come
 * out expanded. We expand the former the way ssh.c does when it connects.
 *
 * Cost: one process per resolution. Measured on this 2-core VM (OpenSSH 9.2): resolveHost takes 5.6 ms
 * warm (1.4 ms with the built-in parser), and 15-18 ms as the first call of a fresh node process
 * (10 ms built-in): +5 to +8 ms per job, small beside the SSH handshake.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { hostname as localHostName, userInfo } from 'node:os';
import { ConfigError } from '../errors.js';
import { expandTilde } from './openssh.js';
import type { SshConfigEntry } from './ssh-config.js';

export interface SshGOptions {
  /** `-F file`: this file instead of ~/.ssh/config and /etc/ssh/ssh_config, as with ssh -F. */
  configFile?: string;
  env: NodeJS.ProcessEnv;
  /** The home ssh uses: the passwd entry's, not $HOME. */
  homeDir: string;
}

/** What `ssh -G` gave, or why it could not be asked (then the built-in parser answers). */
export type SshGAnswer = { entry: SshConfigEntry } | { unavailable: string };

/** The IdentityFile list ssh -G prints when none is configured: defaults, not the user's choice. */
const DEFAULT_IDENTITY = /^~\/\.ssh\/id_(rsa|ecdsa|ecdsa_sk|ed25519|ed25519_sk|xmss|dsa)$/;

export async function sshG(name: string, options: SshGOptions): Promise<SshGAnswer> {
  // -T only silences "Pseudo-terminal will not be allocated" on stderr; `--` keeps a name from being an option.
  const args = ['-G', '-T', ...(options.configFile ? ['-F', options.configFile] : []), '--', name];
  const run = await new Promise<{ code: number | null; stdout: string; stderr: string; error?: NodeJS.ErrnoException }>((done) => {
    execFile('ssh', args, { env: options.env, timeout: 10_000, maxBuffer: 1 << 20, encoding: 'utf8' }, (error, stdout, stderr) => {
      const e = error as (NodeJS.ErrnoException & { code?: string | number }) | null;
      done({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr, ...(e ? { error: e } : {}) });
    }).stdin?.end();
  });
  if (run.error?.code === 'ENOENT') return { unavailable: 'no ssh on PATH' };
  const message = run.stderr.trim();
  if (run.code === 255 && message && !/usage: ssh|illegal option|unknown option/i.test(message)) {
    // A config error: ssh refuses to connect with it, so do we, in ssh's own words (file and line).
    throw new ConfigError(`ssh_config: ${message.split('\n').join('; ')}`, { hint: `see \`ssh -G ${options.configFile ? `-F ${options.configFile} ` : ''}${name}\`` });
  }
  if (run.code !== 0) return { unavailable: `ssh -G failed (${message.split('\n')[0] || run.error?.message || `exit ${run.code}`})` };
  return { entry: fromSshG(run.stdout, name, options) };
}

/** `ssh -G` output to the entry our parser would give: unset (default) options stay undefined. */
export function fromSshG(text: string, name: string, options: SshGOptions): SshConfigEntry {
  const single = new Map<string, string>();
  const multi = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const space = line.indexOf(' ');
    if (space <= 0) continue;
    const key = line.slice(0, space);
    const value = line.slice(space + 1);
    if (key === 'identityfile' || key === 'certificatefile') multi.set(key, [...(multi.get(key) ?? []), value]);
    else single.set(key, value);
  }
  const get = (key: string): string | undefined => single.get(key);
  const hostName = get('hostname') ?? name;
  const port = Number(get('port') ?? 22);
  const user = get('user') ?? userInfo().username;
  const proxyJump = get('proxyjump');
  const hostKeyAlias = get('hostkeyalias');
  const local = localHostName();
  const tokens: Record<string, string> = {
    h: hostName,
    p: String(port),
    r: user,
    n: name,
    d: options.homeDir,
    u: userInfo().username,
    i: String(userInfo().uid),
    l: local,
    L: local.split('.')[0]!,
    k: hostKeyAlias ?? name,
    j: proxyJump ?? '',
    // OpenSSH 9.4+ hashes %l%h%p%r%j; 9.2 omits %j. They agree unless ProxyJump is set.
    C: createHash('sha1').update(`${local}${hostName}${port}${user}${proxyJump ?? ''}`).digest('hex'),
  };
  const path = (value: string, what: string): string => expandClient(expandTilde(value, options.homeDir, what), tokens, options.env, what);

  const identities = multi.get('identityfile') ?? [];
  const defaults = identities.every((f) => DEFAULT_IDENTITY.test(f)) && ['id_rsa', 'id_ecdsa', 'id_ed25519'].every((t) => identities.includes(`~/.ssh/${t}`));
  const list = (key: string): string[] => (get(key) ?? '').split(' ').filter((f) => f !== '' && f !== 'none');
  const seconds = (key: string): number | undefined => {
    const value = get(key);
    return value === undefined || value === 'none' ? undefined : Number(value);
  };
  const proxyCommand = get('proxycommand');
  const strict = get('stricthostkeychecking');
  return {
    hostName,
    port,
    user,
    identityFiles: defaults ? [] : identities.map((f) => path(f, 'IdentityFile')),
    identitiesOnly: get('identitiesonly') === 'yes',
    ...(get('identityagent') !== undefined ? { identityAgent: get('identityagent') } : {}),
    proxyJump: proxyJump === 'none' ? undefined : proxyJump,
    proxyCommand:
      proxyCommand === undefined || proxyCommand === 'none'
        ? undefined
        : expandClient(proxyCommand, { h: hostName, p: String(port), r: user, n: name }, options.env, 'ProxyCommand', false),
    // 'none' kept, as the built-in parser keeps it: resolve-host tells it from "unset" (the defaults).
    userKnownHostsFiles: (get('userknownhostsfile') ?? '').split(' ').filter((f) => f !== ''),
    globalKnownHostsFiles: list('globalknownhostsfile').map((f) => expandTilde(f, options.homeDir, 'GlobalKnownHostsFile')),
    // -G prints yes as "true" and no as "false".
    strictHostKeyChecking: strict === 'true' ? 'yes' : strict === 'false' ? 'no' : strict,
    connectTimeout: seconds('connecttimeout'),
    serverAliveInterval: seconds('serveraliveinterval') || undefined,
    serverAliveCountMax: seconds('serveralivecountmax'),
    hostKeyAlias,
    hashKnownHosts: get('hashknownhosts') === 'yes',
    // ssh -G lists no CertificateFile unless one is configured, so every one here was set by the user.
    certificateFiles: (multi.get('certificatefile') ?? []).map((f) => path(f, 'CertificateFile')),
  };
}

/**
 * %-tokens and, where ssh allows them, ${VAR} from the environment, in one pass as OpenSSH's
 * percent_dollar_expand does (so a value's own % or $ is never expanded twice).
 */
function expandClient(text: string, tokens: Record<string, string>, env: NodeJS.ProcessEnv, what: string, dollar = true): string {
  return text.replace(/%(.?)|\$\{([^}]*)\}/g, (whole, token: string | undefined, variable: string | undefined) => {
    if (variable !== undefined) {
      if (!dollar) return whole;
      const value = env[variable];
      if (value === undefined) throw new ConfigError(`${what} ${text}: environment variable \${${variable}} is not set (ssh refuses it too)`);
      return value;
    }
    if (token === '%') return '%';
    const value = token ? tokens[token] : undefined;
    if (value === undefined) throw new ConfigError(`${what} ${text}: unknown token ${whole} (ssh refuses it too)`);
    return value;
  });
}
