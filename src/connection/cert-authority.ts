/**
 * MInt's certificate authority and the per-job certificates it signs (issue 17, part 2): the grid's
 * proxy-certificate idea with OpenSSH certificates. A job logs in with a key made in memory for it
 * and a certificate valid for its lifetime only, naming one principal and granting nothing (no pty,
 * no forwarding, no agent, no X11, no user rc: an OpenSSH certificate without extensions grants none
 * of them, PROTOCOL.certkeys). The ephemeral private key is never written anywhere.
 *
 * The CA key is ed25519 in a directory (`mint-ssh-exec ca init`): `ca` is its private key as PKCS#8
 * PEM, encrypted (AES-256-CBC, key from the passphrase by PBKDF2, node's OpenSSL) unless created
 * with --no-passphrase, and `ca.pub` its OpenSSH public line. Without `ca` (moved into ssh-agent
 * with `ssh-add`, or kept on a token the agent fronts), certificates are signed by the agent that
 * holds the key of `ca.pub`.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobCredential, ResolvedHost } from '../config/resolved-host.js';
import { ConfigError } from '../errors.js';
import { agentIdentities, agentSign } from './agent-client.js';
import { ed25519Blob, ed25519Signature, fingerprintOf, issueCertificate } from './certificate.js';

/** The environment variable that holds the CA key's passphrase for unattended jobs. */
export const CA_PASSPHRASE_ENV = 'MINT_SSH_EXEC_CA_PASSPHRASE';

/** Without a job timeout: a day. A bound, so that a leaked certificate stops working on its own. */
export const DEFAULT_JOB_CERTIFICATE_MS = 24 * 3600_000;
/** Outside a job (probe, jobs, cancel): one connection's worth. */
export const SHORT_CERTIFICATE_MS = 10 * 60_000;
/** Added to the job's timeout: the last reconnect (download, cleanup) happens after it. */
export const CERTIFICATE_MARGIN_MS = 5 * 60_000;
/** Valid from a minute ago: a site clock a little behind ours must not see a future certificate. */
const CLOCK_SKEW_S = 60n;

export interface Authority {
  dir: string;
  publicKey: Buffer;
  /** `ssh-ed25519 AAAA... mint-ssh-exec-ca`, what the site installs. */
  publicLine: string;
  fingerprint: string;
  /** 'file' (ca, maybe passphrase-protected) or 'agent' (ca.pub only, the key in ssh-agent). */
  heldBy: 'file' | 'agent';
  sign: (data: Buffer) => Promise<Buffer>;
}

export interface InitOptions {
  /** Encrypts the key; undefined writes it unprotected (tests, or a CA moved into an agent at once). */
  passphrase?: string;
  /** Replace an existing CA (every certificate it signed stops being trusted once the site switches). */
  force?: boolean;
}

export async function initAuthority(dir: string, options: InitOptions = {}): Promise<{ publicLine: string; fingerprint: string; encrypted: boolean }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const keyFile = join(dir, 'ca');
  if (!options.force && (await exists(keyFile) || await exists(`${keyFile}.pub`))) {
    throw new ConfigError(`a CA already exists in ${dir}`, { hint: 'use it (mint-ssh-exec ca show), or give --force to replace it' });
  }
  if (options.passphrase !== undefined && options.passphrase.length < 8) throw new ConfigError('the CA passphrase must have at least 8 characters');
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export(
    options.passphrase === undefined
      ? { type: 'pkcs8', format: 'pem' }
      : { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: options.passphrase },
  );
  const blob = ed25519Blob(publicKey);
  const publicLine = `ssh-ed25519 ${blob.toString('base64')} mint-ssh-exec-ca`;
  await writeFile(keyFile, pem, { mode: 0o600, flag: options.force ? 'w' : 'wx' });
  await writeFile(`${keyFile}.pub`, `${publicLine}\n`, { mode: 0o644, flag: options.force ? 'w' : 'wx' });
  return { publicLine, fingerprint: fingerprintOf(blob), encrypted: options.passphrase !== undefined };
}

/** The CA's public half (`ca.pub`): all a site needs, readable without the passphrase. */
export async function readAuthorityPublic(dir: string): Promise<{ publicKey: Buffer; publicLine: string; fingerprint: string }> {
  let publicLine: string;
  try {
    publicLine = (await readFile(join(dir, 'ca.pub'), 'utf8')).trim();
  } catch {
    throw new ConfigError(`no CA in ${dir} (ca.pub is missing)`, { hint: `create one with: mint-ssh-exec ca init --dir ${dir}` });
  }
  const [type, base64] = publicLine.split(/\s+/);
  const publicKey = Buffer.from(base64 ?? '', 'base64');
  if (type !== 'ssh-ed25519' || publicKey.length !== 51) throw new ConfigError(`${join(dir, 'ca.pub')} is not an ed25519 public key line`);
  return { publicKey, publicLine, fingerprint: fingerprintOf(publicKey) };
}

/** Reads the CA in `dir`: its public key always, its signer from the key file or the agent. */
export async function loadAuthority(dir: string, options: { passphrase?: string; agent?: string } = {}): Promise<Authority> {
  const base = { dir, ...(await readAuthorityPublic(dir)) };
  const { publicKey } = base;
  let pem: string | undefined;
  try {
    pem = await readFile(join(dir, 'ca'), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(`cannot read ${join(dir, 'ca')}: ${(error as Error).message}`);
  }
  if (pem === undefined) {
    const socket = options.agent;
    const held = socket ? (await agentIdentities(socket).catch(() => [])).some((k) => k.blob.equals(publicKey)) : false;
    if (!socket || !held) {
      throw new ConfigError(`the CA key of ${join(dir, 'ca.pub')} is neither in ${join(dir, 'ca')} nor in ssh-agent`, {
        hint: 'load it into the agent (ssh-add) or put the key file back',
      });
    }
    return { ...base, heldBy: 'agent', sign: (data) => agentSign(socket, publicKey, data, 0) };
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem.includes('ENCRYPTED') ? { key: pem, passphrase: options.passphrase ?? '' } : { key: pem });
  } catch {
    throw new ConfigError(
      options.passphrase === undefined ? `the CA key ${join(dir, 'ca')} is passphrase-protected` : `wrong passphrase for the CA key ${join(dir, 'ca')}`,
      { hint: `set ${CA_PASSPHRASE_ENV} to its passphrase` },
    );
  }
  if (key.asymmetricKeyType !== 'ed25519' || !ed25519Blob(createPublicKey(key)).equals(publicKey)) {
    throw new ConfigError(`${join(dir, 'ca')} does not match ${join(dir, 'ca.pub')}`);
  }
  return { ...base, heldBy: 'file', sign: async (data) => ed25519Signature(key, data) };
}

export interface CredentialRequest {
  /** Names the certificate (its key id): the job, or what the connection is for. */
  purpose: string;
  /** How long the certificate is valid from now. */
  lifetimeMs: number;
  /** Defaults to $MINT_SSH_EXEC_CA_PASSPHRASE. */
  passphrase?: string;
}

/** A fresh ed25519 key (in memory) and a certificate for it, per the host's per-job policy. */
export async function issueJobCredential(host: ResolvedHost, request: CredentialRequest): Promise<JobCredential> {
  const policy = host.perJobCertificate;
  if (!policy) throw new ConfigError(`host ${host.name} has no per-job certificate policy`);
  const passphrase = request.passphrase ?? process.env[CA_PASSPHRASE_ENV];
  const authority = await loadAuthority(policy.authority, { ...(passphrase !== undefined ? { passphrase } : {}), ...(host.agent ? { agent: host.agent } : {}) });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const now = BigInt(Math.floor(Date.now() / 1000));
  const certificate = await issueCertificate({
    caPublicKey: authority.publicKey,
    caSign: authority.sign,
    publicKey,
    keyId: `mint-ssh-exec ${request.purpose} ${host.user}@${host.name}`,
    principals: [policy.principal],
    serial: randomBytes(8).readBigUInt64BE(),
    validAfter: now - CLOCK_SKEW_S,
    validBefore: now + BigInt(Math.ceil(request.lifetimeMs / 1000)),
    ...(policy.sourceAddress ? { criticalOptions: { 'source-address': policy.sourceAddress } } : {}),
    extensions: [],
  });
  return { privateKey, certificate };
}

async function exists(path: string): Promise<boolean> {
  return readFile(path).then(
    () => true,
    () => false,
  );
}
