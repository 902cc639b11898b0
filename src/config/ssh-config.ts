/**
 * The part of ssh_config(5) this tool needs, resolved the way OpenSSH's readconf.c does it, so a
 * host that works with `ssh alias` resolves to the same hostname, port, user, keys and proxy here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { ConfigError } from '../errors.js';
import { expandTilde as tilde, expandTokens, matchHostPatterns } from './openssh.js';

export interface SshConfigEntry {
  hostName?: string;
  port?: number;
  user?: string;
  /** Every IdentityFile, in order, tokens and ~ expanded. */
  identityFiles: string[];
  identitiesOnly?: boolean;
  /** 'none', 'SSH_AUTH_SOCK', a `$VAR` name, or an expanded path. */
  identityAgent?: string;
  /** Raw value; 'none' gives undefined. */
  proxyJump?: string;
  /** %h %p %r %n %% expanded with the final hostname, port and user; 'none' gives undefined. */
  proxyCommand?: string;
  userKnownHostsFiles: string[];
  /** Lowercased: yes | no | ask | accept-new | off. */
  strictHostKeyChecking?: string;
  /** Seconds. */
  connectTimeout?: number;
  serverAliveInterval?: number;
  serverAliveCountMax?: number;
  hostKeyAlias?: string;
  /** Tilde-expanded; 'none' dropped. Unset: OpenSSH's /etc/ssh/ssh_known_hosts and ssh_known_hosts2. */
  globalKnownHostsFiles?: string[];
  /** HashKnownHosts: write new known_hosts entries hashed. */
  hashKnownHosts?: boolean;
  /** Every CertificateFile set for the host (this client cannot use them yet: issue 17). */
  certificateFiles?: string[];
}

export interface SshConfigOptions {
  /** Name used in error messages for the top-level text. */
  file: string;
  homeDir: string;
  localUser: string;
  /** Reads an Include'd file; undefined when it does not exist. Default: the disk. */
  readFile?: (path: string) => string | undefined;
  /** Lists a directory for an Include glob; undefined or [] when it does not exist. Default: the disk. */
  listDir?: (dir: string) => string[] | undefined;
}

/** A value that still needs %-expansion, with where it came from for the error message. */
interface Sourced {
  value: string;
  where: string;
}

/** Single-valued options: the first value obtained wins, so presence (even of 'none') is what counts. */
interface Single {
  hostName: Sourced;
  port: number;
  user: string;
  identitiesOnly: boolean;
  identityAgent: Sourced;
  // ProxyJump and ProxyCommand exclude each other: whichever comes first wins, as in OpenSSH.
  proxy: { kind: 'jump' | 'command'; value: Sourced };
  userKnownHostsFiles: Sourced[];
  strictHostKeyChecking: string;
  connectTimeout: number | undefined;
  serverAliveInterval: number | undefined;
  serverAliveCountMax: number;
  hostKeyAlias: string;
  globalKnownHostsFiles: string[];
  hashKnownHosts: boolean;
}

interface State {
  alias: string;
  options: SshConfigOptions;
  single: Partial<Single>;
  identityFiles: Sourced[];
  certificateFiles: Sourced[];
}

interface Line {
  keyword: string;
  /** The text after the keyword and its separator, untouched (ProxyCommand keeps quotes and #). */
  rest: string;
  where: string;
}

const MAX_INCLUDE_DEPTH = 16;

export function resolveSshConfig(text: string, alias: string, options: SshConfigOptions): SshConfigEntry {
  const state: State = { alias, options, single: {}, identityFiles: [], certificateFiles: [] };
  processText(state, text, options.file, 0, true, false);
  return finish(state);
}

export async function readSshConfig(
  alias: string,
  options: { path?: string; homeDir?: string; localUser?: string } = {},
): Promise<SshConfigEntry> {
  const homeDir = options.homeDir ?? homedir();
  const localUser = options.localUser ?? currentUser();
  const path = options.path ?? join(homeDir, '.ssh', 'config');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (isMissing(error)) return { identityFiles: [], userKnownHostsFiles: [] };
    throw new ConfigError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  return resolveSshConfig(text, alias, { file: tildeName(path, homeDir), homeDir, localUser });
}

function processText(state: State, text: string, file: string, depth: number, inherited: boolean, neverMatch: boolean): void {
  let active = inherited;
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = parseLine(raw, `${file}:${index + 1}`);
    if (!line) return;
    switch (line.keyword) {
      case 'host':
        active = !neverMatch && matchHostPatterns(state.alias, args(line), false);
        return;
      case 'match': {
        const matched = matchCriteria(state, args(line), line.where);
        active = !neverMatch && matched;
        return;
      }
      case 'include':
        for (const pattern of args(line)) {
          for (const path of includePaths(state.options, pattern)) {
            if (depth + 1 > MAX_INCLUDE_DEPTH) throw new ConfigError(`${line.where}: Include nested more than ${MAX_INCLUDE_DEPTH} deep`);
            const included = (state.options.readFile ?? readFromDisk)(path);
            // An Include inside a block that does not apply is parsed but can never apply, like OpenSSH.
            if (included !== undefined) processText(state, included, tildeName(path, state.options.homeDir), depth + 1, active, !active);
          }
        }
        return;
      default:
        applyOption(state, line, active);
    }
  });
}

function parseLine(raw: string, where: string): Line | undefined {
  const match = /^\s*([^\s=#][^\s=]*)\s*(?:=\s*)?(.*?)\s*$/.exec(raw);
  if (!match) return undefined;
  return { keyword: match[1]!.toLowerCase(), rest: match[2]!, where };
}

/** Splits arguments like OpenSSH's argv_split: quotes group, backslash escapes, an unquoted # ends the line. */
function args(line: Line): string[] {
  const result: string[] = [];
  const s = line.rest;
  let i = 0;
  while (i < s.length) {
    while (i < s.length && /\s/.test(s[i]!)) i++;
    if (i >= s.length || s[i] === '#') break;
    let arg = '';
    let quote = '';
    for (; i < s.length; i++) {
      const c = s[i]!;
      const next = s[i + 1] ?? '';
      if (c === '\\' && (next === '"' || next === "'" || next === '\\' || (!quote && /\s/.test(next)))) {
        arg += next;
        i++;
      } else if (quote) {
        if (c === quote) quote = '';
        else arg += c;
      } else if (c === '"' || c === "'") {
        quote = c;
      } else if (/\s/.test(c)) {
        break;
      } else {
        arg += c;
      }
    }
    if (quote) throw new ConfigError(`${line.where}: unterminated quote`);
    result.push(arg);
  }
  if (result.length === 0) throw new ConfigError(`${line.where}: missing argument after ${line.keyword}`);
  return result;
}

/**
 * `Match all`, `Match host` and `Match originalhost`; any other criterion (exec, user, canonical, ...)
 * makes the block not apply. Where ssh exists, ssh -G answers instead (ssh-g.ts) and knows them all.
 */
function matchCriteria(state: State, criteria: string[], where: string): boolean {
  let result = true;
  for (let i = 0; i < criteria.length; i++) {
    const negate = criteria[i]!.startsWith('!');
    const name = criteria[i]!.slice(negate ? 1 : 0).toLowerCase();
    if (name === 'all') {
      if (negate) result = false;
      continue;
    }
    if (name !== 'host' && name !== 'originalhost') return false;
    const patterns = criteria[++i];
    if (patterns === undefined) throw new ConfigError(`${where}: Match ${name} needs a pattern list`);
    // originalhost is the name as given on the command line (readconf.c match_cfg_line), case-insensitively.
    if (name === 'originalhost') {
      if (matchHostPatterns(state.alias, patterns.split(','), true) === negate) result = false;
      continue;
    }
    // OpenSSH matches `Match host` against HostName as known so far (with %h expanded), case-insensitively.
    const hostName = state.single.hostName;
    const current = hostName ? expand(hostName, { h: state.alias }, 'HostName') : state.alias;
    if (matchHostPatterns(current, patterns.split(','), true) === negate) result = false;
  }
  return result;
}

function applyOption(state: State, line: Line, active: boolean): void {
  const { where } = line;
  // Values are checked even in blocks that do not apply, as OpenSSH does, so typos surface early.
  const once = <K extends keyof Single>(key: K, value: Single[K]): void => {
    if (active && !(key in state.single)) state.single[key] = value;
  };
  const first = (): string => args(line)[0]!;
  switch (line.keyword) {
    case 'hostname':
      return once('hostName', { value: first(), where });
    case 'port':
      return once('port', parsePort(first(), where));
    case 'user':
      return once('user', first());
    case 'identityfile': {
      const value = first();
      if (active && !state.identityFiles.some((f) => f.value === value)) state.identityFiles.push({ value, where });
      return;
    }
    case 'certificatefile': {
      const value = first();
      if (active && !state.certificateFiles.some((f) => f.value === value)) state.certificateFiles.push({ value, where });
      return;
    }
    case 'identitiesonly':
      return once('identitiesOnly', parseFlag(first(), 'IdentitiesOnly', where));
    case 'identityagent':
      return once('identityAgent', { value: first(), where });
    case 'proxyjump':
    case 'proxycommand':
      if (line.rest === '') throw new ConfigError(`${where}: missing argument after ${line.keyword}`);
      return once('proxy', { kind: line.keyword === 'proxyjump' ? 'jump' : 'command', value: { value: line.rest, where } });
    case 'userknownhostsfile':
      return once('userKnownHostsFiles', args(line).map((value) => ({ value, where })));
    case 'stricthostkeychecking':
      return once('strictHostKeyChecking', parseStrict(first(), where));
    case 'connecttimeout':
      return once('connectTimeout', parseTime(first(), 'ConnectTimeout', where));
    case 'serveraliveinterval':
      return once('serverAliveInterval', parseTime(first(), 'ServerAliveInterval', where));
    case 'serveralivecountmax':
      return once('serverAliveCountMax', parseCount(first(), 'ServerAliveCountMax', where));
    case 'hostkeyalias':
      return once('hostKeyAlias', first());
    case 'globalknownhostsfile':
      return once('globalKnownHostsFiles', args(line));
    case 'hashknownhosts':
      return once('hashKnownHosts', parseFlag(first(), 'HashKnownHosts', where));
    default:
      return; // OpenSSH has hundreds of keywords; the ones we do not use cannot change our result.
  }
}

function finish(state: State): SshConfigEntry {
  const { alias, options, single } = state;
  // Tokens need the final hostname, port and user, so nothing is expanded before the whole file is read.
  const hostName = single.hostName && expand(single.hostName, { h: alias }, 'HostName');
  const proxyTokens = {
    h: hostName ?? alias,
    p: String(single.port ?? 22),
    r: single.user ?? options.localUser,
    n: alias,
  };
  const fileTokens = { ...proxyTokens, d: options.homeDir, u: options.localUser };
  const path = (s: Sourced, what: string): string => expand({ ...s, value: expandTilde(s, options.homeDir) }, fileTokens, what);
  const proxy = single.proxy && single.proxy.value.value !== 'none' ? single.proxy : undefined;
  const agent = single.identityAgent;
  return {
    hostName,
    port: single.port,
    user: single.user,
    identityFiles: state.identityFiles.map((f) => path(f, 'IdentityFile')),
    identitiesOnly: single.identitiesOnly,
    identityAgent: agent && (/^(none|SSH_AUTH_SOCK|\$.*)$/.test(agent.value) ? agent.value : path(agent, 'IdentityAgent')),
    proxyJump: proxy?.kind === 'jump' ? proxy.value.value : undefined,
    proxyCommand: proxy?.kind === 'command' ? expand(proxy.value, proxyTokens, 'ProxyCommand') : undefined,
    userKnownHostsFiles: (single.userKnownHostsFiles ?? []).map((f) => (f.value === 'none' ? 'none' : path(f, 'UserKnownHostsFile'))),
    strictHostKeyChecking: single.strictHostKeyChecking,
    connectTimeout: single.connectTimeout,
    serverAliveInterval: single.serverAliveInterval,
    serverAliveCountMax: single.serverAliveCountMax,
    hostKeyAlias: single.hostKeyAlias,
    globalKnownHostsFiles: single.globalKnownHostsFiles
      ?.filter((f) => f !== 'none')
      .map((f) => tilde(f, options.homeDir, 'GlobalKnownHostsFile')),
    hashKnownHosts: single.hashKnownHosts,
    certificateFiles: state.certificateFiles.length > 0 ? state.certificateFiles.map((f) => path(f, 'CertificateFile')) : undefined,
  };
}

function expand(source: Sourced, tokens: Record<string, string>, what: string): string {
  return expandTokens(source.value, tokens, what, source.where);
}

function expandTilde(source: Sourced, homeDir: string): string {
  return tilde(source.value, homeDir, source.where);
}

function parsePort(value: string, where: string): number {
  const port = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(port >= 1 && port <= 65535)) throw new ConfigError(`${where}: Port must be a number 1-65535, got "${value}"`);
  return port;
}

function parseFlag(value: string, keyword: string, where: string): boolean {
  const lower = value.toLowerCase();
  if (lower === 'yes' || lower === 'true') return true;
  if (lower === 'no' || lower === 'false') return false;
  throw new ConfigError(`${where}: ${keyword} must be yes or no, got "${value}"`);
}

function parseStrict(value: string, where: string): string {
  const lower = value.toLowerCase();
  const synonyms: Record<string, string> = { true: 'yes', false: 'no' };
  if (['yes', 'no', 'ask', 'accept-new', 'off'].includes(lower)) return lower;
  if (synonyms[lower]) return synonyms[lower];
  throw new ConfigError(`${where}: StrictHostKeyChecking must be yes, no, ask, accept-new or off, got "${value}"`);
}

/** OpenSSH time format: seconds, or units like 1m30s; 'none' means no limit. */
function parseTime(value: string, keyword: string, where: string): number | undefined {
  if (value === 'none') return undefined;
  if (!/^(?:\d+[smhdw])*\d+[smhdw]?$/i.test(value)) throw new ConfigError(`${where}: ${keyword} must be a time like 30 or 1m30s, got "${value}"`);
  const unit: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  let seconds = 0;
  for (const [, n, u] of value.matchAll(/(\d+)([smhdw]?)/gi)) seconds += Number(n) * (unit[(u || 's').toLowerCase()] ?? 1);
  return seconds;
}

function parseCount(value: string, keyword: string, where: string): number {
  if (!/^\d+$/.test(value)) throw new ConfigError(`${where}: ${keyword} must be a whole number, got "${value}"`);
  return Number(value);
}

/** Include paths: ~ expanded, relative ones under ~/.ssh, `*` and `?` allowed in the last component. */
function includePaths(options: SshConfigOptions, pattern: string): string[] {
  let path = tilde(pattern, options.homeDir, 'Include');
  if (!isAbsolute(path)) path = join(options.homeDir, '.ssh', path);
  const dir = dirname(path);
  const last = path.slice(dir.length + 1);
  if (!/[*?]/.test(last)) return [path];
  const names = (options.listDir ?? listFromDisk)(dir) ?? [];
  // Like glob(3): sorted, and a wildcard does not match a leading dot.
  return names
    .filter((name) => (!name.startsWith('.') || last.startsWith('.')) && matchHostPatterns(name, [last], false))
    .sort()
    .map((name) => join(dir, name));
}

function readFromDisk(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if (isMissing(error) || (error as NodeJS.ErrnoException).code === 'EISDIR') return undefined;
    throw new ConfigError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
}

function listFromDisk(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function tildeName(path: string, homeDir: string): string {
  return path.startsWith(`${homeDir}/`) ? `~${path.slice(homeDir.length)}` : path;
}

function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? process.env.LOGNAME ?? '';
  }
}
