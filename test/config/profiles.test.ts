import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { defaultProfilesPath, loadProfiles, parseProfiles } from '../../src/config/load-profiles.js';

const FINGERPRINT = `SHA256:${'A'.repeat(42)}0`;

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

/** The ConfigError message for `text`, so tests can assert every line of it. */
function problemsIn(text: string): string {
  try {
    parseProfiles(text, 'hosts.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message;
  }
  throw new Error('expected parseProfiles to throw');
}

/** One profile, indented like a hand-written file, so line:col are easy to count. */
const profile = (...fields: string[]) => yaml('hosts:', '  calc-site:', ...fields.map((f) => `    ${f}`));

describe('parseProfiles: valid files', () => {
  it('reads every field and keeps unset ones unset', () => {
    const hosts = parseProfiles(
      yaml(
        'hosts:',
        '  calc-site:',
        '    hostname: calc.example.org',
        '    port: 50022',
        '    user: mint',
        '    identityFile: [~/.ssh/mint_ed25519, ~/.ssh/id_rsa]',
        '    knownHostsFile: ~/.ssh/known_hosts',
        `    hostKeyFingerprint: ${FINGERPRINT}`,
        '    strictHostKeyChecking: yes', // a string under YAML 1.2, not a boolean
        '    proxyCommand: "nc --proxy socks.example:1080 --proxy-type socks4 %h %p"',
        '    proxyJump: admin@bastion:2222,inner',
        '    sshConfig: false',
        '    agent: /run/agent.sock',
        '    connectTimeoutMs: 20000',
        '    keepaliveIntervalMs: 0',
        '    keepaliveCountMax: 3',
        '    cleanup: on-success',
        '    retry: { retries: 5, minTimeoutMs: 500 }',
        '  bare: {}',
        '  legacy:',
        '    strictHostKeyChecking: true',
      ),
      'hosts.yaml',
    );
    expect(hosts).toEqual({
      'calc-site': {
        hostname: 'calc.example.org',
        port: 50022,
        user: 'mint',
        identityFile: ['~/.ssh/mint_ed25519', '~/.ssh/id_rsa'],
        knownHostsFile: '~/.ssh/known_hosts',
        hostKeyFingerprint: FINGERPRINT,
        strictHostKeyChecking: 'yes',
        proxyCommand: 'nc --proxy socks.example:1080 --proxy-type socks4 %h %p',
        proxyJump: 'admin@bastion:2222,inner',
        sshConfig: false,
        agent: '/run/agent.sock',
        connectTimeoutMs: 20000,
        keepaliveIntervalMs: 0,
        keepaliveCountMax: 3,
        cleanup: 'on-success',
        retry: { retries: 5, minTimeoutMs: 500 },
      },
      bare: {},
      legacy: { strictHostKeyChecking: 'yes' },
    });
  });

  it('treats an empty file, a comment-only file and an empty hosts key as no profiles', () => {
    expect(parseProfiles('', 'hosts.yaml')).toEqual({});
    expect(parseProfiles('# nothing yet\n', 'hosts.yaml')).toEqual({});
    expect(parseProfiles(yaml('hosts:', '  # calc-site:', '  #   port: 22'), 'hosts.yaml')).toEqual({});
  });
});

describe('parseProfiles: one problem, pinned to its line and column', () => {
  it('wrong type, worded by the field rather than by zod', () => {
    expect(problemsIn(profile('port: fifty'))).toBe(
      'hosts.yaml:3:11: hosts.calc-site.port: expected an integer from 1 to 65535, got "fifty"',
    );
  });

  it('out of range, with the same wording as a wrong type', () => {
    expect(problemsIn(profile('user: mint', 'connectTimeoutMs: 50'))).toBe(
      'hosts.yaml:4:23: hosts.calc-site.connectTimeoutMs: expected an integer from 100 to 600000, got 50',
    );
  });

  it('a key with no value points at the key', () => {
    expect(problemsIn(profile('user:'))).toBe('hosts.yaml:3:5: hosts.calc-site.user: expected a user name, got an empty value');
  });

  it('value not in the allowed set', () => {
    expect(problemsIn(profile('cleanup: sometimes'))).toBe(
      'hosts.yaml:3:14: hosts.calc-site.cleanup: expected one of "always", "on-success" or "never", got "sometimes"',
    );
    expect(problemsIn(profile('strictHostKeyChecking: no'))).toBe(
      'hosts.yaml:3:28: hosts.calc-site.strictHostKeyChecking: expected "yes" or "accept-new", got "no"',
    );
  });

  it('unknown field points at the key and suggests the close one', () => {
    expect(problemsIn(profile('identity_file: ~/.ssh/key'))).toBe(
      'hosts.yaml:3:5: hosts.calc-site.identity_file: unknown field (did you mean "identityFile"?)',
    );
    expect(problemsIn(profile('prot: 22'))).toBe(
      'hosts.yaml:3:5: hosts.calc-site.prot: unknown field (did you mean "port"?)',
    );
    expect(problemsIn(yaml('hosts: {}', 'defaults: {}'))).toBe(
      'hosts.yaml:2:1: defaults: unknown field; known fields: hosts',
    );
  });

  it('unknown field inside a nested mapping', () => {
    expect(problemsIn(profile('retry:', '  retires: 3'))).toBe(
      'hosts.yaml:4:7: hosts.calc-site.retry.retires: unknown field (did you mean "retries"?)',
    );
  });

  it('text that does not match the required format', () => {
    expect(problemsIn(profile('hostKeyFingerprint: SHA256:tooShort'))).toBe(
      'hosts.yaml:3:25: hosts.calc-site.hostKeyFingerprint: expected a key fingerprint: ' +
        '"SHA256:" and 43 base64 characters, as printed by ssh-keygen -lf, got "SHA256:tooShort"',
    );
    expect(problemsIn(profile('proxyJump: "bastion jump"'))).toBe(
      'hosts.yaml:3:16: hosts.calc-site.proxyJump: expected a jump host as [user@]host[:port], ' +
        'or several separated by commas, got "bastion jump"',
    );
  });

  it('a bad item in a list is reported at the item, not as "matched no option"', () => {
    expect(problemsIn(profile('identityFile:', '  - ~/.ssh/a', '  - 42'))).toBe(
      'hosts.yaml:5:9: hosts.calc-site.identityFile[1]: expected a file path, got 42',
    );
    expect(problemsIn(profile('agent: 1'))).toBe(
      'hosts.yaml:3:12: hosts.calc-site.agent: expected true, false or the path of an agent socket, got 1',
    );
  });

  it('bad profile name points at the name', () => {
    expect(problemsIn(yaml('hosts:', '  "-calc": {}'))).toBe(
      'hosts.yaml:2:3: hosts.-calc: invalid name: expected letters, digits, ".", "_" or "-", ' +
        'starting with a letter or digit, got "-calc"',
    );
  });

  it('a value shared through an alias is reported where the alias is', () => {
    const message = problemsIn(yaml('hosts:', '  a: &base', '    port: 0', '  b: *base'));
    expect(message.split('\n')).toEqual([
      'hosts.yaml:3:11: hosts.a.port: expected an integer from 1 to 65535, got 0',
      'hosts.yaml:4:6: hosts.b.port: expected an integer from 1 to 65535, got 0',
    ]);
  });
});

describe('parseProfiles: whole-file problems', () => {
  it('reports every problem, one per line, in file order', () => {
    const text = yaml(
      '# Profiles for the calculation site.',
      'hosts:',
      '  calc-site:',
      '    hostname: calc.example.org',
      '    user: mint',
      '    # the site moved sshd off 22',
      '    port: fifty',
      '    cleanup: on-success',
      '    identityfile: ~/.ssh/mint_ed25519',
      '  "bad name":',
      '    keepaliveCountMax: 0',
    );
    expect(problemsIn(text).split('\n')).toEqual([
      'hosts.yaml:7:11: hosts.calc-site.port: expected an integer from 1 to 65535, got "fifty"',
      'hosts.yaml:9:5: hosts.calc-site.identityfile: unknown field (did you mean "identityFile"?)',
      'hosts.yaml:10:3: hosts.bad name: invalid name: expected letters, digits, ".", "_" or "-", ' +
        'starting with a letter or digit, got "bad name"',
      'hosts.yaml:11:24: hosts.bad name.keepaliveCountMax: expected an integer from 1 to 100, got 0',
    ]);
  });

  it('YAML syntax errors carry line and column', () => {
    expect(problemsIn(profile('port: 22', 'port: 23'))).toBe(
      'hosts.yaml:4:5: invalid YAML: Map keys must be unique',
    );
    expect(problemsIn(yaml('hosts:', '  calc-site:', '    identityFile: [a, b', '    port: 22'))).toBe(
      'hosts.yaml:4:5: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
    );
  });

  it('says what the top level should look like', () => {
    expect(problemsIn(yaml('- calc-site'))).toBe(
      'hosts.yaml:1:1: expected a mapping with a "hosts" key ("hosts:" followed by one entry per profile), got a list',
    );
    expect(problemsIn(yaml('calc-site:', '  port: 22'))).toMatch(/^hosts\.yaml:1:1: expected a mapping with a "hosts" key/);
    expect(problemsIn(yaml('hosts: [calc-site]'))).toBe(
      'hosts.yaml:1:8: hosts: expected a mapping, got a list',
    );
  });
});

describe('loadProfiles', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mint-profiles-'));
  });
  afterEach(async () => {
    vi.unstubAllEnvs();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a file and names it in errors', async () => {
    const file = join(dir, 'hosts.yaml');
    await writeFile(file, profile('port: 2222'));
    await expect(loadProfiles(file)).resolves.toEqual({ 'calc-site': { port: 2222 } });

    await writeFile(file, profile('port: 0'));
    await expect(loadProfiles(file)).rejects.toThrow(`${file}:3:11: hosts.calc-site.port: expected`);
  });

  it('a missing file the caller named is an error', async () => {
    const file = join(dir, 'nope.yaml');
    await expect(loadProfiles(file)).rejects.toSatisfy(
      (e) => e instanceof ConfigError && e.message === `${file}: host profiles file not found`,
    );
    vi.stubEnv('MINT_SSH_EXEC_CONFIG', file);
    await expect(loadProfiles()).rejects.toThrow(`${file}: host profiles file not found (named by $MINT_SSH_EXEC_CONFIG)`);
  });

  it('a missing default file means no profiles; a present one is read', async () => {
    vi.stubEnv('MINT_SSH_EXEC_CONFIG', '');
    vi.stubEnv('XDG_CONFIG_HOME', '');
    vi.stubEnv('HOME', dir);
    await expect(loadProfiles()).resolves.toEqual({});

    await mkdir(join(dir, '.config', 'mint-ssh-exec'), { recursive: true });
    await writeFile(join(dir, '.config', 'mint-ssh-exec', 'hosts.yaml'), profile('user: mint'));
    await expect(loadProfiles()).resolves.toEqual({ 'calc-site': { user: 'mint' } });
  });
});

describe('defaultProfilesPath', () => {
  it('prefers $MINT_SSH_EXEC_CONFIG, then an absolute $XDG_CONFIG_HOME, then ~/.config', () => {
    expect(defaultProfilesPath({ MINT_SSH_EXEC_CONFIG: '/etc/m.yaml', XDG_CONFIG_HOME: '/x' }, '/home/u')).toBe('/etc/m.yaml');
    expect(defaultProfilesPath({ XDG_CONFIG_HOME: '/x' }, '/home/u')).toBe('/x/mint-ssh-exec/hosts.yaml');
    expect(defaultProfilesPath({ XDG_CONFIG_HOME: 'relative' }, '/home/u')).toBe('/home/u/.config/mint-ssh-exec/hosts.yaml');
    expect(defaultProfilesPath({ HOME: '/home/v' })).toBe('/home/v/.config/mint-ssh-exec/hosts.yaml');
  });
});
