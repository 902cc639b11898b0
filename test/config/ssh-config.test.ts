import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { readSshConfig, resolveSshConfig, type SshConfigOptions } from '../../src/config/ssh-config.js';

const base: SshConfigOptions = { file: '~/.ssh/config', homeDir: '/home/ann', localUser: 'ann' };
const resolve = (lines: string[], alias: string, extra: Partial<SshConfigOptions> = {}) =>
  resolveSshConfig(lines.join('\n'), alias, { ...base, ...extra });

function errorOf(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('line syntax', () => {
  it('accepts any keyword case, "=" separators, quotes and comments', () => {
    const entry = resolve(
      [
        '# a comment line',
        '',
        'HOST box',
        '  hostname=box.example',
        '  PORT = 2200',
        '  User "ann smith"  # trailing comment',
        '\tIdentityFile "~/keys/my key"',
        '  SomeFutureKeyword whatever "unterminated',
      ],
      'box',
    );
    expect(entry).toEqual({
      hostName: 'box.example',
      port: 2200,
      user: 'ann smith',
      identityFiles: ['/home/ann/keys/my key'],
      userKnownHostsFiles: [],
    });
  });

  it('returns an empty entry when nothing applies', () => {
    expect(resolve(['Host other', '  Port 2'], 'box')).toEqual({ identityFiles: [], userKnownHostsFiles: [] });
  });
});

describe('first value wins', () => {
  it('keeps the first value of single-valued keys across and within blocks', () => {
    const entry = resolve(
      ['Host box', '  User first', '  User second', '  Port 2200', 'Host *', '  Port 22', '  User later', '  HostKeyAlias shared'],
      'box',
    );
    expect(entry).toMatchObject({ user: 'first', port: 2200, hostKeyAlias: 'shared' });
  });

  it('accumulates IdentityFile in order, without duplicates', () => {
    const entry = resolve(['Host box', '  IdentityFile ~/.ssh/a', 'Host *', '  IdentityFile ~/.ssh/b', '  IdentityFile ~/.ssh/a'], 'box');
    expect(entry.identityFiles).toEqual(['/home/ann/.ssh/a', '/home/ann/.ssh/b']);
  });

  it('lets an early ProxyCommand none shadow later proxies, and ProxyJump exclude ProxyCommand', () => {
    expect(resolve(['Host box', '  ProxyCommand none', 'Host *', '  ProxyJump bastion'], 'box')).toMatchObject({
      proxyCommand: undefined,
      proxyJump: undefined,
    });
    expect(resolve(['Host box', '  ProxyJump ann@bastion:2222,hop2', 'Host *', '  ProxyCommand nc %h %p'], 'box')).toMatchObject({
      proxyJump: 'ann@bastion:2222,hop2',
      proxyCommand: undefined,
    });
  });
});

describe('Host patterns', () => {
  const config = ['Host !db.* *.example web?', '  User matched'];

  it('matches any of several patterns with * and ? wildcards', () => {
    expect(resolve(config, 'a.example').user).toBe('matched');
    expect(resolve(config, 'web1').user).toBe('matched');
    expect(resolve(config, 'web12').user).toBeUndefined();
  });

  it('lets a matching negation exclude the block although another pattern matches', () => {
    expect(resolve(config, 'db.example').user).toBeUndefined();
    expect(resolve(['Host * !box', '  User any'], 'box').user).toBeUndefined();
    expect(resolve(['Host * !box', '  User any'], 'other').user).toBe('any');
  });

  it('compares Host patterns with the alias as typed, case-sensitively like ssh', () => {
    expect(resolve(['Host web', '  User x'], 'WEB').user).toBeUndefined();
  });
});

describe('Match', () => {
  it('applies Match all, and Match host against the HostName known so far', () => {
    const entry = resolve(
      ['Host box', '  HostName %h.internal.example', 'Match host *.INTERNAL.example', '  User viahost', 'Match all', '  Port 2022'],
      'box',
    );
    expect(entry).toMatchObject({ hostName: 'box.internal.example', user: 'viahost', port: 2022 });
    expect(resolve(['Match !host box', '  User no'], 'box').user).toBeUndefined();
    expect(resolve(['Match host a,!b*,c*', '  User no'], 'bc').user).toBeUndefined();
  });

  it('skips blocks with criteria it cannot evaluate, without throwing or running anything', () => {
    const entry = resolve(
      [
        'Match exec "touch /tmp/should-not-run"',
        '  User fromexec',
        'Match host box user ann',
        '  Port 2',
        'Match canonical all',
        '  Port 3',
        'Host *',
        '  User fallback',
      ],
      'box',
    );
    expect(entry).toMatchObject({ user: 'fallback', port: undefined });
  });
});

describe('Include', () => {
  const files: Record<string, string> = {
    '/home/ann/.ssh/extra': 'Host box\n  User fromextra\n',
    '/home/ann/.ssh/conf.d/10-a.conf': 'Host box\n  IdentityFile ~/.ssh/a\nHost other\n',
    '/home/ann/.ssh/conf.d/20-b.conf': 'IdentityFile ~/.ssh/b\n',
    '/home/ann/.ssh/conf.d/.hidden.conf': 'IdentityFile ~/.ssh/hidden\n',
    '/home/ann/.ssh/bad.conf': 'Host elsewhere\n\n  Port abc\n',
    '/abs/inc': 'Port 2201\n',
  };
  const readFile = (path: string) => files[path];
  const listDir = (dir: string) => (dir === '/home/ann/.ssh/conf.d' ? ['20-b.conf', '10-a.conf', '.hidden.conf', 'notes.txt'] : undefined);
  const io = { readFile, listDir };

  it('resolves relative paths under ~/.ssh and ~ paths, and applies included blocks', () => {
    expect(resolve(['Include extra ~/missing /abs/inc'], 'box', io)).toMatchObject({ user: 'fromextra', port: 2201 });
  });

  it('expands * in the last component in sorted order, skipping dot files', () => {
    // 10-a.conf ends inside "Host other"; that must not leak into 20-b.conf or back into the parent.
    const entry = resolve(['Host box', '  Include conf.d/*.conf', '  IdentityFile ~/.ssh/after'], 'box', io);
    expect(entry.identityFiles).toEqual(['/home/ann/.ssh/a', '/home/ann/.ssh/b', '/home/ann/.ssh/after']);
  });

  it('names the included file in errors, and checks values even where no block applies', () => {
    expect(errorOf(() => resolve(['Include bad.conf'], 'box', io)).message).toBe(
      '~/.ssh/bad.conf:3: Port must be a number 1-65535, got "abc"',
    );
  });

  it('ignores Include inside a block that does not apply', () => {
    expect(resolve(['Host other', '  Include extra /abs/inc'], 'box', io)).toMatchObject({ user: undefined, port: undefined });
  });
});

describe('token expansion', () => {
  it('expands ProxyCommand with the final HostName, Port and User, even ones set after it', () => {
    const entry = resolve(
      [
        'Host jump-*',
        '  ProxyCommand nc --proxy proxy.example:1080 --proxy-type socks4 %h %p # %r %n %%',
        'Host jump-box',
        '  HostName box.internal',
        'Host *',
        '  Port 2222',
        '  User svc',
      ],
      'jump-box',
    );
    expect(entry.proxyCommand).toBe('nc --proxy proxy.example:1080 --proxy-type socks4 box.internal 2222 # svc jump-box %');
  });

  it('expands ~ and %d %u %h %p %r %n in paths, defaulting host, port and user', () => {
    const entry = resolve(
      ['Host box', '  IdentityFile ~/.ssh/id_%h_%p_%r', '  IdentityFile %d/%u/%n', '  UserKnownHostsFile ~/kh /etc/kh_%h', '  IdentityAgent ~/agent.sock'],
      'box',
    );
    expect(entry).toMatchObject({
      identityFiles: ['/home/ann/.ssh/id_box_22_ann', '/home/ann/ann/box'],
      userKnownHostsFiles: ['/home/ann/kh', '/etc/kh_box'],
      identityAgent: '/home/ann/agent.sock',
    });
  });

  it('rejects unknown tokens, and tokens a keyword does not accept, naming file and line', () => {
    expect(errorOf(() => resolve(['Host *', '  IdentityFile ~/.ssh/%x'], 'box')).message).toMatch(/^~\/\.ssh\/config:2: unknown token %x in IdentityFile/);
    expect(errorOf(() => resolve(['ProxyCommand cat %d'], 'box')).message).toMatch(/^~\/\.ssh\/config:1: unknown token %d in ProxyCommand/);
  });
});

describe('values', () => {
  it('parses the remaining keywords', () => {
    const entry = resolve(
      [
        'Host box',
        '  IdentitiesOnly yes',
        '  IdentityAgent SSH_AUTH_SOCK',
        '  StrictHostKeyChecking Accept-New',
        '  ConnectTimeout 1m30s',
        '  ServerAliveInterval 15',
        '  ServerAliveCountMax 4',
      ],
      'box',
    );
    expect(entry).toMatchObject({
      identitiesOnly: true,
      identityAgent: 'SSH_AUTH_SOCK',
      strictHostKeyChecking: 'accept-new',
      connectTimeout: 90,
      serverAliveInterval: 15,
      serverAliveCountMax: 4,
    });
    expect(resolve(['IdentityAgent none', 'IdentitiesOnly no'], 'x')).toMatchObject({ identityAgent: 'none', identitiesOnly: false });
  });

  it('rejects a bad Port with file and line, even in a block that does not apply', () => {
    expect(errorOf(() => resolve(['Host box', '  HostName b', '  Port abc'], 'box')).message).toBe(
      '~/.ssh/config:3: Port must be a number 1-65535, got "abc"',
    );
    expect(errorOf(() => resolve(['Host elsewhere', 'Port 0'], 'box')).message).toMatch(/^~\/\.ssh\/config:2: Port must be/);
    expect(errorOf(() => resolve(['Port 65536'], 'box')).message).toMatch(/got "65536"/);
    expect(errorOf(() => resolve(['StrictHostKeyChecking maybe'], 'box')).message).toMatch(/^~\/\.ssh\/config:1: StrictHostKeyChecking/);
  });
});

describe('readSshConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ssh-config-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gives an empty entry for a missing file', async () => {
    expect(await readSshConfig('box', { path: join(dir, 'nope'), homeDir: dir, localUser: 'ann' })).toEqual({
      identityFiles: [],
      userKnownHostsFiles: [],
    });
  });

  it('reads ~/.ssh/config by default and names it with ~ in errors', async () => {
    mkdirSync(join(dir, '.ssh'));
    writeFileSync(join(dir, '.ssh', 'config'), 'Include inc\nHost box\n  HostName box.example\n');
    writeFileSync(join(dir, '.ssh', 'inc'), 'Host box\n  IdentityFile %d/id\n');
    expect(await readSshConfig('box', { homeDir: dir, localUser: 'ann' })).toMatchObject({
      hostName: 'box.example',
      identityFiles: [join(dir, 'id')],
    });
    writeFileSync(join(dir, '.ssh', 'config'), '\nPort x\n');
    await expect(readSshConfig('box', { homeDir: dir, localUser: 'ann' })).rejects.toThrow('~/.ssh/config:2: Port must be');
  });
});

// The real `ssh -G` is the reference: whatever it resolves, we must resolve the same.
const hasSsh = (() => {
  try {
    execFileSync('ssh', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasSsh)('agrees with ssh -G', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ssh-g-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const me = userInfo();

  it.each(['web.example', 'db.example', 'plain'])('for %s', (alias) => {
    writeFileSync(join(dir, 'inc'), 'Host db.*\n  Port 2345\n  User dbadmin\n');
    const text = [
      'Host !plain *.example',
      '  HostName %h.internal',
      `  Include ${join(dir, 'inc')}`,
      '  StrictHostKeyChecking=ACCEPT-NEW',
      '  UserKnownHostsFile ~/kh1 /kh2_%h_%p_%r',
      '  IdentitiesOnly yes',
      'Match host web.*.INTERNAL',
      '  User webuser',
      '  HostKeyAlias web-alias',
      'Host *',
      '  Port 2200',
      '  StrictHostKeyChecking ask',
      '  UserKnownHostsFile /dev/null',
      '  HostKeyAlias fallback-alias',
      '  ConnectTimeout 2m5s',
      '  IdentitiesOnly no',
      '  IdentityAgent ~/agent.%n',
      '  ServerAliveInterval 7',
      '  ServerAliveCountMax 9',
    ].join('\n');
    const file = join(dir, 'config');
    writeFileSync(file, text);
    const out = execFileSync('ssh', ['-G', '-F', file, alias], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const g = new Map(out.split('\n').map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)] as const));
    const entry = resolveSshConfig(text, alias, { file, homeDir: me.homedir, localUser: me.username });
    expect({
      hostname: entry.hostName ?? alias,
      port: String(entry.port),
      user: entry.user ?? me.username,
      stricthostkeychecking: entry.strictHostKeyChecking,
      userknownhostsfile: entry.userKnownHostsFiles.join(' '),
      connecttimeout: String(entry.connectTimeout),
      identitiesonly: entry.identitiesOnly ? 'yes' : 'no',
      identityagent: entry.identityAgent,
      serveraliveinterval: String(entry.serverAliveInterval),
      serveralivecountmax: String(entry.serverAliveCountMax),
      hostkeyalias: entry.hostKeyAlias,
    }).toEqual({
      hostname: g.get('hostname'),
      port: g.get('port'),
      user: g.get('user'),
      stricthostkeychecking: g.get('stricthostkeychecking'),
      userknownhostsfile: g.get('userknownhostsfile'),
      connecttimeout: g.get('connecttimeout'),
      identitiesonly: g.get('identitiesonly'),
      identityagent: g.get('identityagent'),
      serveraliveinterval: g.get('serveraliveinterval'),
      serveralivecountmax: g.get('serveralivecountmax'),
      hostkeyalias: g.get('hostkeyalias'),
    });
  });
});
