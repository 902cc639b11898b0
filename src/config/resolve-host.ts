/**
 * From the name a caller gives to everything needed to reach it. Precedence, as a user expects:
 * the host profile (YAML), then ~/.ssh/config for the same name, then OpenSSH's defaults.
 */
import { existsSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { ConfigError } from '../errors.js';
import { loadProfiles } from './load-profiles.js';
import { expandTilde, expandTokens } from './openssh.js';
import { HostProfileSchema, type HostProfile } from './profile-schema.js';
import { readSshConfig, type SshConfigEntry } from './ssh-config.js';
import { sshG } from './ssh-g.js';
import { DEFAULTS, type ResolvedHost } from './resolved-host.js';

/** Where `mint-ssh-exec ca init` puts MInt's CA unless told otherwise. */
export const DEFAULT_CA_DIR = '~/.config/mint-ssh-exec/ca';

/** A host given inline instead of by name: a profile plus the name to call it by. */
export type InlineHost = HostProfile & { name?: string };

export interface ResolveOptions {
  /** YAML host profiles file; default $MINT_SSH_EXEC_CONFIG or ~/.config/mint-ssh-exec/hosts.yaml. */
  configFile?: string;
  /** Also where `ssh` is looked up (PATH) for `ssh -G`, and what it sees. */
  env?: NodeJS.ProcessEnv;
  /** Where ~ points. ssh uses the passwd entry's home; another one here means the built-in parser reads ssh_config. */
  homeDir?: string;
}

/** How ssh_config was read, for probe and error reports. */
interface SshConfigSource {
  entry: SshConfigEntry;
  by: ResolvedHost['resolvedBy'];
  why?: string;
}

export async function resolveHost(host: string | InlineHost, options: ResolveOptions = {}): Promise<ResolvedHost> {
  const env = options.env ?? process.env;
  const home = options.homeDir ?? env.HOME ?? homedir();
  let name: string;
  let profile: HostProfile;
  if (typeof host === 'string') {
    if (!/^[A-Za-z0-9_.@:[\]-]+$/.test(host)) throw new ConfigError(`host ${JSON.stringify(host)} is not a valid host or profile name`);
    name = host;
    const profiles = await loadProfiles(options.configFile);
    profile = profiles[host] ?? {};
  } else {
    const { name: given, ...rest } = host;
    const parsed = HostProfileSchema.safeParse(rest);
    if (!parsed.success) {
      throw new ConfigError(`inline host: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(host)'}: ${i.message}`).join('; ')}`);
    }
    profile = parsed.data;
    name = given ?? profile.hostname ?? '';
    if (!name) throw new ConfigError('inline host needs a hostname');
  }
  if (profile.mode === 'pull') return pullHost(name, profile, env, home);
  const source = await sshConfigFor(name, profile, home, env);
  return merge(name, profile, source, env, home);
}

/** A pull-mode host: no ssh_config is read (there is no SSH); hub, site and token file are required. */
function pullHost(name: string, profile: HostProfile, env: NodeJS.ProcessEnv, home: string): ResolvedHost {
  const missing = (['hub', 'site', 'hubTokenFile'] as const).filter((k) => profile[k] === undefined);
  if (missing.length > 0) throw new ConfigError(`host ${name}: mode: pull needs ${missing.join(', ')}`);
  const base = merge(name, { ...profile, sshConfig: false, hostname: new URL(profile.hub!).hostname }, { entry: { identityFiles: [], userKnownHostsFiles: [] }, by: 'none' }, env, home);
  return {
    ...base,
    pull: {
      hub: profile.hub!,
      site: profile.site!,
      tokenFile: expandHome(profile.hubTokenFile!, home),
      ...(profile.hubCa ? { ca: expandHome(profile.hubCa, home) } : {}),
    },
  };
}

/** What a name given as HOST stands for, before it is used as a host name as it is. */
export interface NameOrigin {
  /** A profile in the profiles file has this name. */
  profile: boolean;
  /** ~/.ssh/config gives this name a HostName of another name: an alias, as `ssh NAME` would use it. */
  sshAlias: boolean;
  /** The profiles the file defines, for a "did you mean" when the name is neither. */
  profiles: string[];
}

export async function nameOrigin(name: string, options: ResolveOptions = {}): Promise<NameOrigin> {
  const env = options.env ?? process.env;
  const home = options.homeDir ?? env.HOME ?? homedir();
  const profiles = await loadProfiles(options.configFile);
  const profile = Object.hasOwn(profiles, name);
  const ssh = (await sshConfigFor(name, profiles[name] ?? {}, home, env)).entry;
  // ssh -G always prints a hostname (the name itself when no HostName applies): an alias is a
  // name whose HostName is another name.
  const sshAlias = ssh.hostName !== undefined && ssh.hostName.toLowerCase() !== name.toLowerCase();
  return { profile, sshAlias, profiles: Object.keys(profiles).sort() };
}

/**
 * OpenSSH's own answer (`ssh -G`) where an ssh binary is on PATH, else the built-in parser. Both
 * read the profile's `sshConfig` file instead of ~/.ssh/config when it names one (ssh -F).
 */
async function sshConfigFor(name: string, profile: HostProfile, home: string, env: NodeJS.ProcessEnv): Promise<SshConfigSource> {
  if (profile.sshConfig === false) return { entry: { identityFiles: [], userKnownHostsFiles: [] }, by: 'none' };
  const path = typeof profile.sshConfig === 'string' ? expandHome(profile.sshConfig, home) : undefined;
  if (path && !existsSync(path)) throw new ConfigError(`ssh config ${path} named by the profile does not exist`);
  let why: string;
  const passwd = passwdHome();
  if (passwd !== undefined && resolvePath(home) === resolvePath(passwd)) {
    const answer = await sshG(name, { env, homeDir: home, ...(path ? { configFile: path } : {}) });
    if ('entry' in answer) return { entry: answer.entry, by: 'ssh -G' };
    why = answer.unavailable;
  } else {
    // ssh reads ~/.ssh/config and expands ~ from the passwd entry, whatever $HOME says.
    why = `home ${home} is not the passwd home ssh would read`;
  }
  return { entry: await readSshConfig(name, { homeDir: home, ...(path ? { path } : {}) }), by: 'built-in', why };
}

function passwdHome(): string | undefined {
  try {
    return userInfo().homedir;
  } catch {
    return undefined;
  }
}

function merge(name: string, profile: HostProfile, source: SshConfigSource, env: NodeJS.ProcessEnv, home: string): ResolvedHost {
  const ssh = source.entry;
  const hostname = profile.hostname ?? ssh.hostName ?? name;
  const port = profile.port ?? ssh.port ?? DEFAULTS.port;
  const user = profile.user ?? ssh.user ?? env.USER ?? userInfo().username;
  const list = (value: string | string[] | undefined): string[] | undefined =>
    value === undefined ? undefined : (Array.isArray(value) ? value : [value]).map((p) => expandHome(p, home));

  const identityFiles =
    list(profile.identityFile) ??
    (ssh.identityFiles.length > 0 ? ssh.identityFiles : ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => join(home, '.ssh', f)));
  // ssh looks in the user's files, then the system's; a new key is written to the first user file.
  const userFiles = ssh.userKnownHostsFiles.length > 0 ? ssh.userKnownHostsFiles.filter((f) => f !== 'none') : [join(home, '.ssh', 'known_hosts'), join(home, '.ssh', 'known_hosts2')];
  const knownHostsFiles = list(profile.knownHostsFile) ?? [...userFiles, ...(ssh.globalKnownHostsFiles ?? ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'])];
  const fingerprints = profile.hostKeyFingerprint === undefined ? [] : ([] as string[]).concat(profile.hostKeyFingerprint);

  // We never turn verification off: "no" and "ask" from ~/.ssh/config are read as "yes".
  // With `UserKnownHostsFile none` there is no user file to record a key in (accept-new would write
  // into a system-wide file): unknown keys are refused instead.
  const recordable = profile.knownHostsFile !== undefined || userFiles.length > 0;
  const strict = profile.strictHostKeyChecking ?? (ssh.strictHostKeyChecking === 'accept-new' && recordable ? 'accept-new' : 'yes');

  let agent: string | undefined;
  if (profile.agent === false) agent = undefined;
  else if (typeof profile.agent === 'string') agent = expandHome(profile.agent, home);
  else if (ssh.identityAgent === 'none') agent = undefined;
  // `IdentityAgent $NAME`: the socket named by that environment variable (ssh_config(5)).
  else if (ssh.identityAgent?.startsWith('$')) agent = env[ssh.identityAgent.slice(1)] || undefined;
  else if (ssh.identityAgent && ssh.identityAgent !== 'SSH_AUTH_SOCK') agent = expandHome(ssh.identityAgent, home);
  else agent = env.SSH_AUTH_SOCK || undefined;

  const proxyCommand = profile.proxyCommand ? expandTokens(profile.proxyCommand, { h: hostname, p: String(port), r: user, n: name }, 'proxyCommand') : ssh.proxyCommand;
  const proxyJump = profile.proxyJump ?? ssh.proxyJump;
  if ((profile.certificateAuthority ?? profile.certificatePrincipal ?? profile.certificateSourceAddress) !== undefined && profile.certificate !== 'per-job') {
    throw new ConfigError(`host ${name}: certificateAuthority, certificatePrincipal and certificateSourceAddress need certificate: per-job`);
  }
  if (proxyCommand && proxyJump) {
    throw new ConfigError(`host ${name} has both ProxyCommand and ProxyJump; OpenSSH uses one, so choose one`);
  }

  return {
    name,
    hostname,
    port,
    user,
    identityFiles,
    identitiesOnly: ssh.identitiesOnly ?? false,
    agent,
    knownHostsFiles,
    hostKeyFingerprints: fingerprints,
    strictHostKeyChecking: strict,
    hostKeyAlias: ssh.hostKeyAlias ?? hostname,
    proxyCommand,
    proxyJump,
    connectTimeoutMs: profile.connectTimeoutMs ?? (ssh.connectTimeout ? ssh.connectTimeout * 1000 : DEFAULTS.connectTimeoutMs),
    keepaliveIntervalMs: profile.keepaliveIntervalMs ?? (ssh.serverAliveInterval ? ssh.serverAliveInterval * 1000 : DEFAULTS.keepaliveIntervalMs),
    keepaliveCountMax: profile.keepaliveCountMax ?? ssh.serverAliveCountMax ?? DEFAULTS.keepaliveCountMax,
    cleanup: profile.cleanup ?? DEFAULTS.cleanup,
    retry: { ...DEFAULTS.retry, ...(profile.retry ?? {}) },
    hashKnownHosts: ssh.hashKnownHosts ?? false,
    certificateFiles: [...new Set([...(list(profile.certificateFile) ?? []), ...(ssh.certificateFiles ?? [])])],
    ...(profile.certificate === 'per-job'
      ? {
          perJobCertificate: {
            authority: expandHome(profile.certificateAuthority ?? DEFAULT_CA_DIR, home),
            principal: profile.certificatePrincipal ?? user,
            ...(profile.certificateSourceAddress ? { sourceAddress: profile.certificateSourceAddress } : {}),
          },
        }
      : {}),
    resolvedBy: source.by,
    ...(source.why ? { resolvedByWhy: source.why } : {}),
  };
}

/** `[user@]host[:port]`, one ProxyJump hop, resolved like any host and then overridden. */
export async function resolveJump(spec: string, options: ResolveOptions = {}): Promise<ResolvedHost> {
  const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(spec);
  if (!m) throw new ConfigError(`ProxyJump hop ${JSON.stringify(spec)} is not [user@]host[:port]`);
  const hostPart = m[2]!.replace(/^\[|\]$/g, '');
  const base = await resolveHost(hostPart, options);
  return {
    ...base,
    ...(m[1] ? { user: m[1] } : {}),
    ...(m[3] ? { port: Number(m[3]) } : {}),
    proxyJump: base.proxyJump,
  };
}

export function expandHome(path: string, home: string): string {
  return resolvePath(expandTilde(path, home));
}
