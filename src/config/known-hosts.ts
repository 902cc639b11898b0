/**
 * known_hosts lookups as sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT" describes them, so a host the user
 * already trusts with OpenSSH is trusted here, and a changed or revoked key is refused the same way.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { knownHostsName, matchHostPatterns } from './openssh.js';

export type HostKeyCheck =
  | { status: 'match'; file?: string; line: number }
  | { status: 'mismatch'; line: number; knownType: string; knownFingerprint: string }
  | { status: 'revoked'; line: number }
  | { status: 'unknown' };

interface Entry {
  marker: '' | '@revoked' | '@cert-authority';
  hosts: string;
  type: string;
  blob: Buffer;
}

export function checkKnownHosts(text: string, host: string, port: number, keyBlob: Buffer): HostKeyCheck {
  const name = knownHostsName(host, port);
  let matched: number | undefined;
  let revoked: number | undefined;
  const others: { line: number; type: string; blob: Buffer }[] = [];

  text.split(/\r?\n/).forEach((raw, index) => {
    const entry = parseEntry(raw);
    // CA lines vouch for certificates, never for a plain host key.
    if (!entry || entry.marker === '@cert-authority' || !hostFieldMatches(entry.hosts, name)) return;
    const line = index + 1;
    const same = entry.blob.equals(keyBlob);
    if (entry.marker === '@revoked') {
      if (same) revoked ??= line;
    } else if (same) {
      matched ??= line;
    } else {
      others.push({ line, type: entry.type, blob: entry.blob });
    }
  });

  if (revoked !== undefined) return { status: 'revoked', line: revoked };
  if (matched !== undefined) return { status: 'match', line: matched };
  const presentedType = tryKeyType(keyBlob);
  // The entry of the offered key's own type is the one that "changed"; name it rather than, say, an old RSA line.
  const known = others.find((o) => o.type === presentedType) ?? others[0];
  if (known) return { status: 'mismatch', line: known.line, knownType: known.type, knownFingerprint: fingerprintSha256(known.blob) };
  return { status: 'unknown' };
}

/** Same text as `ssh-keygen -l`: unpadded base64 of the SHA-256 of the key blob. */
export function fingerprintSha256(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

export function keyTypeOf(keyBlob: Buffer): string {
  const length = keyBlob.length >= 4 ? keyBlob.readUInt32BE(0) : -1;
  if (length < 1 || length > keyBlob.length - 4) throw new RangeError('not an SSH public key blob: bad key type length');
  return keyBlob.toString('latin1', 4, 4 + length);
}

/** One known_hosts line; `hashed` writes the name as HashKnownHosts does (see hashKnownHostsName). */
export function knownHostsLine(host: string, port: number, keyBlob: Buffer, hashed = false): string {
  const name = knownHostsName(host, port);
  return `${hashed ? hashKnownHostsName(name) : name} ${keyTypeOf(keyBlob)} ${keyBlob.toString('base64')}`;
}

/**
 * `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, as OpenSSH's hostfile.c host_hash() writes it:
 * a fresh 20-byte salt (SHA-1's size) per entry, so equal names give unrelated lines.
 */
export function hashKnownHostsName(name: string, salt: Buffer = randomBytes(20)): string {
  const hash = createHmac('sha1', salt).update(name).digest();
  return `|1|${salt.toString('base64')}|${hash.toString('base64')}`;
}

function parseEntry(raw: string): Entry | undefined {
  const fields = raw.trim().split(/\s+/);
  if (fields[0] === '' || fields[0]!.startsWith('#')) return undefined;
  let marker: Entry['marker'] = '';
  if (fields[0]!.startsWith('@')) {
    const given = fields.shift()!;
    if (given !== '@revoked' && given !== '@cert-authority') return undefined;
    marker = given;
  }
  const [hosts, type, key] = fields;
  // Malformed lines (or old SSH1 "bits exponent modulus" ones) are skipped, as ssh does.
  if (!hosts || !type || !key || !/^[A-Za-z0-9+/]+={0,2}$/.test(key)) return undefined;
  return { marker, hosts, type, blob: Buffer.from(key, 'base64') };
}

function hostFieldMatches(field: string, name: string): boolean {
  if (!field.startsWith('|1|')) return matchHostPatterns(name, field.split(','), true);
  // Hashed: |1|base64(salt)|base64(HMAC-SHA1 keyed by salt, of the lookup name).
  const [, , salt, hash] = field.split('|');
  if (!salt || !hash) return false;
  const expected = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
  return expected.equals(Buffer.from(hash, 'base64'));
}

function tryKeyType(keyBlob: Buffer): string | undefined {
  try {
    return keyTypeOf(keyBlob);
  } catch {
    return undefined;
  }
}

export { matchHostPatterns } from './openssh.js';
