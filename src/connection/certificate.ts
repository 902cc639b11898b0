/**
 * OpenSSH certificates (PROTOCOL.certkeys in OpenSSH's source): read one, check it the way sshd
 * will before offering it, and make one (a per-job user certificate signed by MInt's CA).
 *
 * Why the client checks at all: sshd's refusal of a certificate is one opaque USERAUTH_FAILURE, the
 * same as for an unknown key; only its own log says "expired" or "name is not a listed principal".
 * What can be known here (validity window, principals, certificate type) is checked here and named
 * in the AuthError; what cannot (which CAs the site trusts, its principals="" list, source-address
 * against the address the site sees) is said to be unknowable instead of guessed.
 */
import type { CertificateProblem } from '../errors.js';
import { createHash, createPublicKey, randomBytes, sign as cryptoSign, type KeyObject } from 'node:crypto';

export const USER_CERT = 1;
export const HOST_CERT = 2;

/** Certificate key types and the plain key type each one certifies. */
const CERT_TYPES: Record<string, string> = {
  'ssh-ed25519-cert-v01@openssh.com': 'ssh-ed25519',
  'ssh-rsa-cert-v01@openssh.com': 'ssh-rsa',
  'ecdsa-sha2-nistp256-cert-v01@openssh.com': 'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384-cert-v01@openssh.com': 'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521-cert-v01@openssh.com': 'ecdsa-sha2-nistp521',
};

export function isCertificateType(type: string): boolean {
  return type in CERT_TYPES;
}

export interface Certificate {
  /** The whole certificate as sent on the wire (what `-cert.pub` holds in base64). */
  blob: Buffer;
  /** e.g. `ssh-ed25519-cert-v01@openssh.com`. */
  type: string;
  /** The certified key's plain type, e.g. `ssh-ed25519`. */
  keyType: string;
  /** The certified public key as a plain key blob (what the matching `.pub` holds). */
  publicKey: Buffer;
  serial: bigint;
  /** 1 = user, 2 = host. */
  certType: number;
  keyId: string;
  /** Empty: valid for any user (sshd then needs a principals="" line to accept it). */
  principals: string[];
  /** Seconds since the epoch; validBefore 2^64-1 means forever. */
  validAfter: bigint;
  validBefore: bigint;
  criticalOptions: Record<string, string>;
  extensions: string[];
  /** The CA's public key blob and its SHA256 fingerprint. */
  caKey: Buffer;
  caFingerprint: string;
}

const FOREVER = 0xffff_ffff_ffff_ffffn;

class Reader {
  private offset = 0;
  constructor(private readonly buffer: Buffer) {}
  private need(n: number): void {
    if (this.offset + n > this.buffer.length) throw new Error('truncated certificate');
  }
  uint32(): number {
    this.need(4);
    const v = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  uint64(): bigint {
    this.need(8);
    const v = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }
  bytes(): Buffer {
    const n = this.uint32();
    this.need(n);
    const v = this.buffer.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
  text(): string {
    return this.bytes().toString('utf8');
  }
  get position(): number {
    return this.offset;
  }
  get done(): boolean {
    return this.offset === this.buffer.length;
  }
}

function string(value: Buffer | string): Buffer {
  const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  return Buffer.concat([length, data]);
}

function uint32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  return b;
}

function uint64(value: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(value);
  return b;
}

export function sshString(value: Buffer | string): Buffer {
  return string(value);
}

export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** Reads a certificate blob, or a `-cert.pub` line (`type base64 [comment]`). Throws on anything else. */
export function parseCertificate(input: Buffer | string): Certificate {
  let blob: Buffer;
  if (typeof input === 'string') {
    const [type, base64] = input.trim().split(/\s+/);
    if (!type || !base64 || !isCertificateType(type)) throw new Error(`not an OpenSSH certificate (type ${JSON.stringify((type ?? '').slice(0, 60))})`);
    blob = Buffer.from(base64, 'base64');
  } else {
    blob = input;
  }
  const r = new Reader(blob);
  const type = r.text();
  const keyType = CERT_TYPES[type];
  if (!keyType) throw new Error(`not an OpenSSH certificate (type ${JSON.stringify(type.slice(0, 60))})`);
  r.bytes(); // nonce
  const keyParts: Buffer[] = [string(keyType)];
  if (keyType === 'ssh-ed25519') keyParts.push(string(r.bytes()));
  else if (keyType === 'ssh-rsa') {
    const e = r.bytes();
    const n = r.bytes();
    keyParts.push(string(e), string(n));
  } else {
    const curve = r.bytes();
    const q = r.bytes();
    keyParts.push(string(curve), string(q));
  }
  const serial = r.uint64();
  const certType = r.uint32();
  const keyId = r.text();
  const principals = names(r.bytes());
  const validAfter = r.uint64();
  const validBefore = r.uint64();
  const criticalOptions = options(r.bytes());
  const extensions = Object.keys(options(r.bytes()));
  r.bytes(); // reserved
  const caKey = r.bytes();
  r.bytes(); // signature
  if (!r.done) throw new Error('trailing bytes after the certificate');
  return {
    blob,
    type,
    keyType,
    publicKey: Buffer.concat(keyParts),
    serial,
    certType,
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions,
    extensions,
    caKey,
    caFingerprint: fingerprintOf(caKey),
  };
}

function names(data: Buffer): string[] {
  const r = new Reader(data);
  const out: string[] = [];
  while (!r.done) out.push(r.text());
  return out;
}

function options(data: Buffer): Record<string, string> {
  const r = new Reader(data);
  const out: Record<string, string> = {};
  while (!r.done) {
    const name = r.text();
    const value = r.bytes();
    // Option data is itself a string inside the string (PROTOCOL.certkeys); flags have none.
    out[name] = value.length >= 4 ? new Reader(value).text() : '';
  }
  return out;
}

function time(seconds: bigint): string {
  if (seconds >= FOREVER) return 'forever';
  return new Date(Number(seconds) * 1000).toISOString().replace('.000Z', 'Z');
}

/** One line for messages: `ED25519 certificate id "x" serial 3 for mint, valid ... to ...`. */
export function describeCertificate(cert: Certificate): string {
  const principals = cert.principals.length ? cert.principals.join(',') : '(any principal)';
  return `certificate id ${JSON.stringify(cert.keyId)} serial ${cert.serial} for ${principals}, valid ${time(cert.validAfter)} to ${time(cert.validBefore)}, CA ${cert.caFingerprint}`;
}

/**
 * What sshd would refuse for sure, known before offering: the type, the validity window and the
 * principals (sshd matches the login name against them: auth2-pubkey.c, "name is not a listed principal").
 */
export function checkCertificate(cert: Certificate, user: string, source: string, nowSeconds = BigInt(Math.floor(Date.now() / 1000))): CertificateProblem | undefined {
  const what = `${source}: ${describeCertificate(cert)}`;
  if (cert.certType !== USER_CERT) return { kind: 'not-a-user-certificate', source, message: `${what} is a host certificate, not a user certificate` };
  if (nowSeconds >= cert.validBefore) return { kind: 'expired', source, message: `${what} expired at ${time(cert.validBefore)}` };
  if (nowSeconds < cert.validAfter) return { kind: 'not-yet-valid', source, message: `${what} is not valid before ${time(cert.validAfter)} (check this computer's clock)` };
  if (cert.principals.length > 0 && !cert.principals.includes(user)) {
    return { kind: 'wrong-principal', source, message: `${what} does not name the login user ${user} among its principals` };
  }
  return undefined;
}

export interface IssueRequest {
  /** The CA's public key blob (`ssh-ed25519` + 32 bytes). */
  caPublicKey: Buffer;
  /** Signs the certificate body with the CA's key: a whole SSH signature blob. */
  caSign: (data: Buffer) => Promise<Buffer>;
  /** The ed25519 public key to certify. */
  publicKey: KeyObject;
  keyId: string;
  principals: string[];
  serial: bigint;
  validAfter: bigint;
  validBefore: bigint;
  /** Critical options, e.g. `source-address`; sorted by name as sshd requires. */
  criticalOptions?: Record<string, string>;
  /** Extension names (permit-pty...); none grants nothing, the point of a per-job certificate. */
  extensions?: string[];
}

/** The raw 32 bytes of an ed25519 key (public, or the public half of a private one). */
function ed25519Raw(key: KeyObject): Buffer {
  const jwk = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new Error('not an ed25519 key');
  return Buffer.from(jwk.x, 'base64url');
}

/** The OpenSSH public key blob (`ssh-ed25519` + 32 bytes) of an ed25519 key. */
export function ed25519Blob(key: KeyObject): Buffer {
  return Buffer.concat([string('ssh-ed25519'), string(ed25519Raw(key))]);
}

/** A signature blob as SSH sends it: string(type) string(signature). */
export function ed25519Signature(key: KeyObject, data: Buffer): Buffer {
  return Buffer.concat([string('ssh-ed25519'), string(cryptoSign(null, data, key))]);
}

function encodeOptions(entries: [string, string][], withData: boolean): Buffer {
  const sorted = [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.concat(sorted.map(([name, value]) => Buffer.concat([string(name), withData && value !== '' ? string(string(value)) : string(Buffer.alloc(0))])));
}

/** Builds and signs an ed25519 user certificate in process (the layout `ssh-keygen -s` writes). */
export async function issueCertificate(request: IssueRequest): Promise<Buffer> {
  const body = Buffer.concat([
    string('ssh-ed25519-cert-v01@openssh.com'),
    string(randomBytes(32)),
    string(ed25519Raw(request.publicKey)),
    uint64(request.serial),
    uint32(USER_CERT),
    string(request.keyId),
    string(Buffer.concat(request.principals.map((p) => string(p)))),
    uint64(request.validAfter),
    uint64(request.validBefore),
    string(encodeOptions(Object.entries(request.criticalOptions ?? {}), true)),
    string(encodeOptions((request.extensions ?? []).map((e) => [e, '']), false)),
    string(Buffer.alloc(0)),
    string(request.caPublicKey),
  ]);
  return Buffer.concat([body, string(await request.caSign(body))]);
}
