/**
 * OpenSSH's small rules, each written once: %-tokens, `~`, pattern lists and the name known_hosts
 * files are keyed by. ssh_config(5), sshd_config(5) and sshd(8) share them, and the copies this
 * package used to have disagreed (two token expanders, three `~` expanders, two glob matchers, and
 * two known_hosts names of which one lowercased the host and one did not).
 */
import { ConfigError } from '../errors.js';

/**
 * Replaces %x tokens from `tokens` (%% is a percent sign) in the value of `what`. An unknown token
 * is an error naming `where` (file:line, when there is one) and the tokens supported there, as ssh
 * refuses it too.
 */
export function expandTokens(text: string, tokens: Record<string, string>, what: string, where?: string): string {
  return text.replace(/%(.?)/g, (whole, token: string) => {
    if (token === '%') return '%';
    const value = tokens[token];
    if (value === undefined) {
      throw new ConfigError(`${where ? `${where}: ` : ''}unknown token ${whole || '%'} in ${what} (supported here: %%${Object.keys(tokens).map((t) => ` %${t}`).join('')})`);
    }
    return value;
  });
}

/** `~` and `~/...` under `home`; other paths unchanged; `~user` is refused (ssh would look the user up). */
export function expandTilde(path: string, home: string, where = 'a path'): string {
  if (path === '~' || path.startsWith('~/')) return home.replace(/\/+$/, '') + path.slice(1);
  if (path.startsWith('~')) throw new ConfigError(`${where}: ~user paths are not supported, got "${path}"`);
  return path;
}

/** One pattern: `*` any run of characters, `?` any one character, everything else itself. */
export function wildcardMatch(name: string, pattern: string, ignoreCase: boolean): boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`, ignoreCase ? 'is' : 's').test(name);
}

/**
 * OpenSSH's pattern-list rule: `*` and `?` wildcards, and a matching `!pattern` rejects the name
 * even when another pattern accepts it.
 */
export function matchHostPatterns(name: string, patterns: readonly string[], ignoreCase: boolean): boolean {
  let accepted = false;
  for (const pattern of patterns) {
    const negated = pattern.startsWith('!');
    if (!wildcardMatch(name, negated ? pattern.slice(1) : pattern, ignoreCase)) continue;
    if (negated) return false;
    accepted = true;
  }
  return accepted;
}

/** The name a known_hosts line is keyed by: ssh lowercases the host and brackets a port other than 22. */
export function knownHostsName(host: string, port: number): string {
  const lower = host.toLowerCase();
  return port === 22 ? lower : `[${lower}]:${port}`;
}
