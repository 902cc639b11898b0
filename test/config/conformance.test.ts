/**
 * Host resolution equal to OpenSSH's (issue 13, item 11). For every host of every config in
 * test/config/corpus/: resolveHost through `ssh -G` gives what OpenSSH itself uses (checked field
 * by field against ssh's own output, with ssh as the oracle for the expansions -G leaves undone),
 * and the built-in parser (the fallback without an ssh binary) gives the same, except for the
 * differences listed in BUILT_IN_DIFFERS: a new divergence, or one that went away, fails here.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveHost } from '../../src/config/resolve-host.js';
import type { ResolvedHost } from '../../src/config/resolved-host.js';

const CORPUS = join(import.meta.dirname, 'corpus');
const HOME = userInfo().homedir;

/**
 * Where the built-in parser is known to differ from OpenSSH 9.2, per corpus file and host: the
 * fields that differ, and why. Each is a limit of the fallback only; with ssh on PATH, ssh answers.
 */
const BUILT_IN_DIFFERS: Record<string, Record<string, Record<string, string>>> = {
  '01-host-patterns.conf': {
    // ssh lowercases the name it is given before using it as HostName (ssh.c: lowercase(host)).
    'WEB.EXAMPLE': { hostname: 'ssh lowercases the host name', hostKeyAlias: 'defaults to the host name' },
  },
  '02-match.conf': {
    box: {
      connectTimeoutMs: 'Match canonical: not evaluated by the built-in parser',
      keepaliveIntervalMs: 'Match final: not evaluated by the built-in parser',
    },
    'box.example': {
      connectTimeoutMs: 'Match canonical: not evaluated by the built-in parser',
      keepaliveIntervalMs: 'Match final: not evaluated by the built-in parser',
    },
    other: {
      identityFiles: 'Match exec: the built-in parser runs no commands',
      hostKeyAlias: 'Match user (evaluated in ssh\'s final pass): not evaluated by the built-in parser',
      connectTimeoutMs: 'Match canonical: not evaluated by the built-in parser',
      keepaliveIntervalMs: 'Match final: not evaluated by the built-in parser',
    },
  },
  '04-tokens.conf': {
    tok: { identityFiles: 'tokens %i %l %L %k %C: the built-in parser knows %h %p %r %n %d %u only, and refuses the rest' },
    'tok.example': { identityFiles: 'tokens %i %l %L %k %C: the built-in parser knows %h %p %r %n %d %u only, and refuses the rest' },
  },
};

interface Case {
  file: string;
  path: string;
  aliases: string[];
}

let work: string;
let relDir: string;
let madeSshDir = false;
const cases: Case[] = readdirSync(CORPUS)
  .filter((f) => f.endsWith('.conf'))
  .sort()
  .map((file) => {
    const head = readFileSync(join(CORPUS, file), 'utf8').split('\n')[0]!;
    const aliases = /^# aliases: (.+)$/.exec(head)?.[1]?.split(' ');
    if (!aliases) throw new Error(`${file}: first line must be "# aliases: a b c"`);
    return { file, path: '', aliases };
  });

beforeAll(() => {
  // Relative Includes are read under ~/.ssh whatever -F says (readconf.c), so that case needs a dir there.
  const sshDir = join(HOME, '.ssh');
  if (!existsSync(sshDir)) {
    mkdirSync(sshDir, { mode: 0o700 });
    madeSshDir = true;
  }
  relDir = mkdtempSync(join(sshDir, 'mint-conformance-'));
  work = mkdtempSync(join(tmpdir(), 'mint-conformance-'));
  cpSync(CORPUS, work, { recursive: true });
  cpSync(join(CORPUS, 'rel.include'), join(relDir, 'rel.include'));
  for (const c of cases) {
    c.path = join(work, c.file);
    const text = readFileSync(c.path, 'utf8').replaceAll('@DIR@', work).replaceAll('@HOMEREL@', basename(relDir));
    writeFileSync(c.path, text);
  }
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  rmSync(madeSshDir ? join(HOME, '.ssh') : relDir, { recursive: true, force: true });
});

/** `ssh -G` itself: `key value` lines, several values for the keys that repeat. */
function sshG(file: string, alias: string, extra: string[] = []): Map<string, string[]> {
  const out = execFileSync('ssh', ['-G', '-T', '-F', file, ...extra, '--', alias], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const map = new Map<string, string[]>();
  for (const line of out.split('\n')) {
    const i = line.indexOf(' ');
    if (i > 0) map.set(line.slice(0, i), [...(map.get(line.slice(0, i)) ?? []), line.slice(i + 1)]);
  }
  return map;
}

/**
 * ssh's own expansion of a value -G printed unexpanded: UserKnownHostsFile takes ~ and the same
 * %-tokens as IdentityFile and CertificateFile, and -G prints it expanded.
 */
function expandedBySsh(file: string, alias: string, raw: string): string {
  return sshG(file, alias, ['-o', `UserKnownHostsFile=${raw}`]).get('userknownhostsfile')![0]!;
}

const FIELDS = [
  'hostname', 'port', 'user', 'identityFiles', 'identitiesOnly', 'agent', 'knownHostsFiles', 'strictHostKeyChecking',
  'hostKeyAlias', 'proxyCommand', 'proxyJump', 'connectTimeoutMs', 'keepaliveIntervalMs', 'keepaliveCountMax',
  'hashKnownHosts', 'certificateFiles',
] as const satisfies readonly (keyof ResolvedHost)[];

function pick(host: ResolvedHost): Record<string, unknown> {
  return Object.fromEntries(FIELDS.map((f) => [f, host[f]]));
}

describe('host resolution conforms to OpenSSH (ssh -G) over the corpus', () => {
  const all = cases.flatMap((c) => c.aliases.map((alias) => [c.file, alias, c] as const));

  it.each(all)('%s: %s via ssh -G is what ssh uses', async (_file, alias, c) => {
    const host = await resolveHost({ name: alias, sshConfig: c.path });
    expect(host.resolvedBy).toBe('ssh -G');
    const g = sshG(c.path, alias);
    const one = (key: string): string | undefined => g.get(key)?.[0];
    const identities = g.get('identityfile') ?? [];
    const defaults = identities.length === 7 && identities.every((f) => /^~\/\.ssh\/id_/.test(f));
    const strict = one('stricthostkeychecking');
    expect(pick(host)).toEqual({
      hostname: one('hostname'),
      port: Number(one('port')),
      user: one('user'),
      // ssh's defaults (~/.ssh/id_rsa ... id_dsa) are not the user's choice: ours stand in for them.
      identityFiles: defaults ? ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((k) => join(HOME, '.ssh', k)) : identities.map((f) => expandedBySsh(c.path, alias, f)),
      identitiesOnly: one('identitiesonly') === 'yes',
      agent: [undefined, 'SSH_AUTH_SOCK'].includes(one('identityagent')) ? process.env.SSH_AUTH_SOCK || undefined : one('identityagent') === 'none' ? undefined : one('identityagent'),
      knownHostsFiles: [...one('userknownhostsfile')!.split(' '), ...one('globalknownhostsfile')!.split(' ')],
      strictHostKeyChecking: strict === 'accept-new' ? 'accept-new' : 'yes',
      hostKeyAlias: one('hostkeyalias') ?? one('hostname'),
      proxyCommand: one('proxycommand') && expandedBySsh(c.path, alias, one('proxycommand')!),
      proxyJump: one('proxyjump'),
      connectTimeoutMs: one('connecttimeout') === 'none' ? 20_000 : Number(one('connecttimeout')) * 1000,
      keepaliveIntervalMs: one('serveraliveinterval') === '0' ? 10_000 : Number(one('serveraliveinterval')) * 1000,
      keepaliveCountMax: Number(one('serveralivecountmax')),
      hashKnownHosts: one('hashknownhosts') === 'yes',
      certificateFiles: (g.get('certificatefile') ?? []).map((f) => expandedBySsh(c.path, alias, f)),
    });
  });

  it.each(all)('%s: %s via the built-in parser differs only as documented', async (file, alias, c) => {
    const viaSsh = pick(await resolveHost({ name: alias, sshConfig: c.path }));
    let builtIn: Record<string, unknown>;
    let differs: string[];
    try {
      const host = await resolveHost({ name: alias, sshConfig: c.path }, { env: { ...process.env, PATH: '/nonexistent' } });
      expect(host.resolvedBy).toBe('built-in');
      builtIn = pick(host);
      differs = FIELDS.filter((f) => JSON.stringify(builtIn[f]) !== JSON.stringify(viaSsh[f]));
    } catch (error) {
      // The built-in parser refuses tokens it does not know, as ssh refuses tokens *it* does not know.
      expect((error as Error).message).toMatch(/unknown token/);
      differs = ['identityFiles'];
    }
    expect(differs).toEqual(Object.keys(BUILT_IN_DIFFERS[file]?.[alias] ?? {}));
  });
});

describe('resolveHost and ssh -G', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mint-ssh-g-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const config = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('takes Match originalhost into account (the issue-13 config: ssh -G port 40545, probe said 2222)', async () => {
    const path = config('orig', 'Match originalhost box\n  Port 40545\nHost box\n  HostName 127.0.0.1\n  Port 2222\n');
    const host = await resolveHost({ name: 'box', sshConfig: path });
    expect({ port: host.port, resolvedBy: host.resolvedBy }).toEqual({ port: 40545, resolvedBy: 'ssh -G' });
  });

  it("turns ssh's refusal of a config into a ConfigError with ssh's own message", async () => {
    const path = config('bad', 'Host box\n  NoSuchOption yes\n');
    await expect(resolveHost({ name: 'box', sshConfig: path })).rejects.toMatchObject({
      name: 'ConfigError',
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(/Bad configuration option: nosuchoption/) as unknown,
    });
  });

  it('lets the profile win over ssh_config, and does not take ssh\'s default keys for explicit ones', async () => {
    const path = config('prec', 'Host box\n  Port 2222\n  User cfg\n  IdentityFile /keys/cfg\n');
    const host = await resolveHost({ name: 'box', sshConfig: path, port: 2323, user: 'prof', identityFile: '/keys/prof' });
    expect([host.port, host.user, host.identityFiles]).toEqual([2323, 'prof', ['/keys/prof']]);
    const plain = await resolveHost({ name: 'other', sshConfig: path });
    expect(plain.identityFiles).toEqual(['id_ed25519', 'id_ecdsa', 'id_rsa'].map((k) => join(HOME, '.ssh', k)));
    expect(plain.port).toBe(22);
  });

  it('falls back to the built-in parser without an ssh binary, and says so', async () => {
    const path = config('fallback', 'Host box\n  Port 2222\n  HashKnownHosts yes\n');
    const host = await resolveHost({ name: 'box', sshConfig: path }, { env: { ...process.env, PATH: '/nonexistent' } });
    expect([host.resolvedBy, host.resolvedByWhy, host.port, host.hashKnownHosts]).toEqual(['built-in', 'no ssh on PATH', 2222, true]);
    const viaSsh = await resolveHost({ name: 'box', sshConfig: path });
    expect([viaSsh.resolvedBy, viaSsh.hashKnownHosts]).toEqual(['ssh -G', true]);
  });

  it('uses the built-in parser when HOME is not the passwd home ssh reads, and says why', async () => {
    const path = config('home', 'Host box\n  Port 2222\n');
    const host = await resolveHost({ name: 'box', sshConfig: path }, { homeDir: dir });
    expect([host.resolvedBy, host.resolvedByWhy, host.port]).toEqual(['built-in', `home ${dir} is not the passwd home ssh would read`, 2222]);
  });

  it('never lets accept-new record into a system file when UserKnownHostsFile is none', async () => {
    const path = config('none', 'Host box\n  UserKnownHostsFile none\n  StrictHostKeyChecking accept-new\n');
    for (const env of [process.env, { ...process.env, PATH: '/nonexistent' }]) {
      const host = await resolveHost({ name: 'box', sshConfig: path }, { env });
      expect([host.knownHostsFiles, host.strictHostKeyChecking]).toEqual([['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'], 'yes']);
    }
  });

  it('leaves ssh_config alone with sshConfig: false', async () => {
    const host = await resolveHost({ name: 'box', hostname: 'h', sshConfig: false });
    expect([host.resolvedBy, host.hashKnownHosts, host.certificateFiles]).toEqual(['none', false, []]);
  });
});
