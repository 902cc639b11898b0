import { execFileSync, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkKnownHosts, fingerprintSha256, keyTypeOf, knownHostsLine } from '../../src/config/known-hosts.js';

// Real keys from ssh-keygen, so blobs, types and fingerprints are exactly what OpenSSH produces.
const dir = mkdtempSync(join(tmpdir(), 'known-hosts-test-'));
interface Key {
  pubFile: string;
  blob: Buffer;
  /** "type base64", as it appears in known_hosts. */
  text: string;
}
const keys: Record<'a' | 'b' | 'ecdsa', Key> = {} as Record<'a' | 'b' | 'ecdsa', Key>;

function makeKey(name: string, type: string): Key {
  const file = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', name, '-f', file], { stdio: 'ignore' });
  const [keyType, base64] = readFileSync(`${file}.pub`, 'utf8').split(' ');
  return { pubFile: `${file}.pub`, blob: Buffer.from(base64!, 'base64'), text: `${keyType} ${base64}` };
}

beforeAll(() => {
  keys.a = makeKey('a', 'ed25519');
  keys.b = makeKey('b', 'ed25519');
  keys.ecdsa = makeKey('c', 'ecdsa');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const lines = (...l: string[]) => l.join('\n');

describe('key helpers', () => {
  it('computes the same SHA256 fingerprint as ssh-keygen -l', () => {
    for (const key of [keys.a, keys.ecdsa]) {
      const listed = execFileSync('ssh-keygen', ['-l', '-f', key.pubFile], { encoding: 'utf8' }).split(' ')[1];
      expect(fingerprintSha256(key.blob)).toBe(listed);
    }
  });

  it('reads the key type from the blob', () => {
    expect(keyTypeOf(keys.a.blob)).toBe('ssh-ed25519');
    expect(keyTypeOf(keys.ecdsa.blob)).toBe('ecdsa-sha2-nistp256');
    expect(() => keyTypeOf(Buffer.from([0, 0, 0, 99, 1]))).toThrow(/not an SSH public key/);
  });

  it('writes known_hosts lines that ssh-keygen -F finds under the right name', () => {
    expect(knownHostsLine('Host.Example', 22, keys.a.blob)).toBe(`host.example ${keys.a.text}`);
    const file = join(dir, 'written');
    writeFileSync(file, `${knownHostsLine('host.example', 2222, keys.a.blob)}\n`);
    expect(readFileSync(file, 'utf8')).toBe(`[host.example]:2222 ${keys.a.text}\n`);
    expect(spawnSync('ssh-keygen', ['-F', '[host.example]:2222', '-f', file]).status).toBe(0);
    expect(spawnSync('ssh-keygen', ['-F', 'host.example', '-f', file]).status).toBe(1);
  });
});

describe('checkKnownHosts', () => {
  it('finds the matching line, skipping comments and blank lines', () => {
    const text = lines('# comment', '', `other.example ${keys.b.text}`, `   web.example,10.0.0.1 ${keys.a.text} a comment`);
    expect(checkKnownHosts(text, 'web.example', 22, keys.a.blob)).toEqual({ status: 'match', line: 4 });
    expect(checkKnownHosts(text, '10.0.0.1', 22, keys.a.blob)).toEqual({ status: 'match', line: 4 });
    expect(checkKnownHosts(text, 'WEB.example', 22, keys.a.blob)).toEqual({ status: 'match', line: 4 });
  });

  it('looks up [host]:port for other ports, and only that', () => {
    const text = lines(`web.example ${keys.b.text}`, `[web.example]:2222 ${keys.a.text}`);
    expect(checkKnownHosts(text, 'web.example', 2222, keys.a.blob)).toEqual({ status: 'match', line: 2 });
    expect(checkKnownHosts(text, 'web.example', 22, keys.a.blob)).toMatchObject({ status: 'mismatch', line: 1 });
    expect(checkKnownHosts(text, 'web.example', 2200, keys.a.blob)).toEqual({ status: 'unknown' });
  });

  it('supports * and ? wildcards and !negation in the host list', () => {
    const text = `*.example,!db.example,[h?]:2222 ${keys.a.text}`;
    expect(checkKnownHosts(text, 'web.example', 22, keys.a.blob)).toEqual({ status: 'match', line: 1 });
    expect(checkKnownHosts(text, 'h1', 2222, keys.a.blob)).toEqual({ status: 'match', line: 1 });
    expect(checkKnownHosts(text, 'db.example', 22, keys.a.blob)).toEqual({ status: 'unknown' });
    expect(checkKnownHosts(text, 'web.example.org', 22, keys.a.blob)).toEqual({ status: 'unknown' });
  });

  it('matches hashed entries by HMAC-SHA1 of the lookup name', () => {
    const salt = randomBytes(20);
    const hashed = (name: string) => `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
    const text = lines(`${hashed('[web.example]:2222')} ${keys.a.text}`, `${hashed('db.example')} ${keys.b.text}`);
    expect(checkKnownHosts(text, 'web.example', 2222, keys.a.blob)).toEqual({ status: 'match', line: 1 });
    expect(checkKnownHosts(text, 'web.example', 22, keys.a.blob)).toEqual({ status: 'unknown' });
    expect(checkKnownHosts(text, 'db.example', 22, keys.a.blob)).toMatchObject({ status: 'mismatch', line: 2 });
  });

  it('matches entries hashed by ssh-keygen -H', () => {
    const file = join(dir, 'to-hash');
    writeFileSync(file, lines(`web.example ${keys.b.text}`, `[web.example]:2222 ${keys.a.text}`, ''));
    execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' });
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('web.example');
    expect(checkKnownHosts(text, 'web.example', 2222, keys.a.blob)).toMatchObject({ status: 'match' });
    expect(checkKnownHosts(text, 'web.example', 22, keys.a.blob)).toMatchObject({ status: 'mismatch' });
  });

  it('reports a mismatch with the known key of the same type, when no line matches', () => {
    const text = lines(`web.example ${keys.ecdsa.text}`, `web.example ${keys.b.text}`);
    expect(checkKnownHosts(text, 'web.example', 22, keys.a.blob)).toEqual({
      status: 'mismatch',
      line: 2,
      knownType: 'ssh-ed25519',
      knownFingerprint: fingerprintSha256(keys.b.blob),
    });
    expect(checkKnownHosts(`web.example ${keys.ecdsa.text}`, 'web.example', 22, keys.a.blob)).toMatchObject({
      status: 'mismatch',
      knownType: 'ecdsa-sha2-nistp256',
    });
  });

  it('does not count a line with another key type when another line matches', () => {
    const text = lines(`web.example ${keys.ecdsa.text}`, `web.example ${keys.a.text}`);
    expect(checkKnownHosts(text, 'web.example', 22, keys.a.blob)).toEqual({ status: 'match', line: 2 });
  });

  it('is unknown when the host has no entries', () => {
    expect(checkKnownHosts('', 'web.example', 22, keys.a.blob)).toEqual({ status: 'unknown' });
    expect(checkKnownHosts(`other.example ${keys.b.text}`, 'web.example', 22, keys.a.blob)).toEqual({ status: 'unknown' });
  });

  it('lets @revoked win over a matching line', () => {
    const text = lines(`web.example ${keys.a.text}`, `@revoked * ${keys.b.text}`, `@revoked *.example ${keys.a.text}`);
    expect(checkKnownHosts(text, 'web.example', 22, keys.a.blob)).toEqual({ status: 'revoked', line: 3 });
    expect(checkKnownHosts(text, 'web.example', 22, keys.b.blob)).toEqual({ status: 'revoked', line: 2 });
    expect(checkKnownHosts(lines(`web.example ${keys.a.text}`, `@revoked * ${keys.b.text}`), 'web.example', 22, keys.a.blob)).toEqual({
      status: 'match',
      line: 1,
    });
  });

  it('ignores @cert-authority and malformed lines for plain host keys', () => {
    const text = lines(
      `@cert-authority *.example ${keys.b.text}`,
      'web.example ssh-ed25519',
      'web.example ssh-ed25519 not*base64',
      `@bogus web.example ${keys.b.text}`,
      `@cert-authority web.example ${keys.a.text}`,
    );
    expect(checkKnownHosts(text, 'web.example', 22, keys.a.blob)).toEqual({ status: 'unknown' });
  });
});
