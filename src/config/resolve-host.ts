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
import { DEFAULTS, type ResolvedHost } from './resolved-host.js';

/** A host given inline instead of by name: a profile plus the name to call it by. */
export type InlineHost = HostProfile & { name?: string };

export interface ResolveOptions {
  /** YAML host profiles file; default $MINT_SSH_EXEC_CONFIG or ~/.config/mint-ssh-exec/hosts.yaml. */
  configFile?: string;
  env?: NodeJS.ProcessEnv;
  homeDir?: string;
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
  const ssh = await sshConfigFor(name, profile, home);
  return merge(name, profile, ssh, env, home);
}

/** What a name given as HOST stands for, before it is used as a host name as it is. */
export interface NameOrigin {
  /** A profile in the profiles file has this name. */
  profile: boolean;
  /** ~/.ssh/config gives this name a HostName: an alias, as `ssh NAME` would use it. */
  sshAlias: boolean;
  /** The profiles the file defines, for a "did you mean" when the name is neither. */
  profiles: string[];
}

export async function nameOrigin(name: string, options: ResolveOptions = {}): Promise<NameOrigin> {
  const env = options.env ?? process.env;
  const home = options.homeDir ?? env.HOME ?? homedir();
  const profiles = await loadProfiles(options.configFile);
  const profile = Object.hasOwn(profiles, name);
  const ssh = await sshConfigFor(name, profiles[name] ?? {}, home);
  return { profile, sshAlias: ssh.hostName !== undefined, profiles: Object.keys(profiles).sort() };
}

async function sshConfigFor(name: string, profile: HostProfile, home: string): Promise<SshConfigEntry> {
  if (profile.sshConfig === false) return { identityFiles: [], userKnownHostsFiles: [] };
  const path = typeof profile.sshConfig === 'string' ? expandHome(profile.sshConfig, home) : undefined;
  if (path && !existsSync(path)) throw new ConfigError(`ssh config ${path} named by the profile does not exist`);
  return readSshConfig(name, { homeDir: home, ...(path ? { path } : {}) });
}

function merge(name: string, profile: HostProfile, ssh: SshConfigEntry, env: NodeJS.ProcessEnv, home: string): ResolvedHost {
  const hostname = profile.hostname ?? ssh.hostName ?? name;
  const port = profile.port ?? ssh.port ?? DEFAULTS.port;
  const user = profile.user ?? ssh.user ?? env.USER ?? userInfo().username;
  const list = (value: string | string[] | undefined): string[] | undefined =>
    value === undefined ? undefined : (Array.isArray(value) ? value : [value]).map((p) => expandHome(p, home));

  const identityFiles =
    list(profile.identityFile) ??
    (ssh.identityFiles.length > 0 ? ssh.identityFiles : ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => join(home, '.ssh', f)));
  const knownHostsFiles =
    list(profile.knownHostsFile) ??
    (ssh.userKnownHostsFiles.length > 0
      ? ssh.userKnownHostsFiles
      : [join(home, '.ssh', 'known_hosts'), join(home, '.ssh', 'known_hosts2'), '/etc/ssh/ssh_known_hosts']);
  const fingerprints = profile.hostKeyFingerprint === undefined ? [] : ([] as string[]).concat(profile.hostKeyFingerprint);

  // We never turn verification off: "no" and "ask" from ~/.ssh/config are read as "yes".
  const strict = profile.strictHostKeyChecking ?? (ssh.strictHostKeyChecking === 'accept-new' ? 'accept-new' : 'yes');

  let agent: string | undefined;
  if (profile.agent === false) agent = undefined;
  else if (typeof profile.agent === 'string') agent = expandHome(profile.agent, home);
  else if (ssh.identityAgent === 'none') agent = undefined;
  else if (ssh.identityAgent && ssh.identityAgent !== 'SSH_AUTH_SOCK') agent = expandHome(ssh.identityAgent, home);
  else agent = env.SSH_AUTH_SOCK || undefined;

  const proxyCommand = profile.proxyCommand ? expandTokens(profile.proxyCommand, { h: hostname, p: String(port), r: user, n: name }, 'proxyCommand') : ssh.proxyCommand;
  const proxyJump = profile.proxyJump ?? ssh.proxyJump;
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
