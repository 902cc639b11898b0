/**
 * Authentication in OpenSSH's order: agent keys first (unless IdentitiesOnly), then each identity
 * file. Keys that cannot be used (missing, encrypted without an agent) are skipped and named in the
 * final error, so "permission denied" always says what was tried.
 *
 * Certificates go before plain keys: the job's own certificate (alone: `certificate: per-job`
 * means no static key is offered), then certificate files (the profile's, ssh_config's
 * CertificateFile, a `KEY-cert.pub` beside an identity file, as ssh loads it), then the agent's
 * certificate identities. Each is checked first (validity, principals, user type) and skipped with
 * the reason when sshd would refuse it for sure.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { sign as cryptoSign } from 'node:crypto';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, AuthHandlerMiddleware, Client, ParsedKey } from 'ssh2';
import type { ResolvedHost } from '../config/resolved-host.js';
import type { CertificateProblem } from '../errors.js';
import { checkCertificate, describeCertificate, ed25519Signature, parseCertificate, sshString, type Certificate } from './certificate.js';
import { AGENT_RSA_SHA2_512, agentIdentities, agentSign, type AgentIdentity } from './agent-client.js';

export interface AuthPlan {
  handler: AuthHandlerMiddleware;
  /** Human-readable list of what was offered, for error messages. */
  tried: string[];
  skipped: string[];
  /** Certificates skipped before offering, and (after a failure) those the server refused. */
  certificateProblems: CertificateProblem[];
  /** Certificates offered, in order, so a refusal can name them. */
  offeredCertificates: { source: string; certificate: Certificate }[];
}

/** A certificate with a way to sign for it: a key file, the agent, or the job's in-memory key. */
interface CertificateIdentity {
  source: string;
  certificate: Certificate;
  /** The algorithm name sent with the request (for RSA, the SHA-2 variant of the cert type). */
  algorithm: string;
  /** A whole SSH signature blob: string(signature type) string(signature). */
  sign(data: Buffer): Promise<Buffer>;
}

interface Attempt {
  label: string;
  method: AnyAuthMethod;
  certificate?: CertificateIdentity;
}

export function planAuth(host: ResolvedHost): AuthPlan {
  const plan: AuthPlan = { handler: () => undefined, tried: [], skipped: [], certificateProblems: [], offeredCertificates: [] };
  let attempts: Promise<Attempt[]> | undefined;
  let next = 0;
  plan.handler = (_left, _partial, callback) => {
    attempts ??= buildAttempts(host, plan);
    void attempts.then((list) => {
      const entry = list[next++];
      if (!entry) {
        callback(false as unknown as AnyAuthMethod);
        return;
      }
      plan.tried.push(entry.label);
      if (entry.certificate) plan.offeredCertificates.push({ source: entry.certificate.source, certificate: entry.certificate.certificate });
      callback(entry.method);
    });
  };
  return plan;
}

async function buildAttempts(host: ResolvedHost, plan: AuthPlan): Promise<Attempt[]> {
  if (host.jobCredential) {
    const { privateKey, certificate } = host.jobCredential;
    const parsed = parseCertificate(certificate);
    return [certificateAttempt(host, { source: 'per-job', certificate: parsed, algorithm: parsed.type, sign: async (data) => ed25519Signature(privateKey, data) }, plan)];
  }
  const fileKeys: { file: string; key: ParsedKey }[] = [];
  for (const file of host.identityFiles) {
    let text: Buffer;
    try {
      text = readFileSync(file);
    } catch {
      plan.skipped.push(`${file} (not readable)`);
      continue;
    }
    const parsed = ssh2.utils.parseKey(text);
    if (parsed instanceof Error) {
      plan.skipped.push(`${file} (${/encrypted|passphrase/i.test(parsed.message) ? 'encrypted: load it into ssh-agent' : parsed.message})`);
      continue;
    }
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (key) fileKeys.push({ file, key });
  }

  const useAgent = host.agent !== undefined && !host.identitiesOnly;
  let agentList: AgentIdentity[] | undefined;
  const agentKeys = async (): Promise<AgentIdentity[]> => {
    if (agentList) return agentList;
    agentList = [];
    if (host.agent === undefined) return agentList;
    try {
      agentList = await agentIdentities(host.agent);
    } catch (error) {
      plan.skipped.push(`ssh-agent certificates (${(error as Error).message})`);
    }
    return agentList;
  };

  const attempts: Attempt[] = [];
  const seen = new Set<string>();
  const offer = async (source: string, cert: Certificate): Promise<void> => {
    const id = cert.blob.toString('base64');
    if (seen.has(id)) return;
    seen.add(id);
    const problem = checkCertificate(cert, host.user, source);
    if (problem) {
      plan.certificateProblems.push(problem);
      return;
    }
    const algorithm = cert.keyType === 'ssh-rsa' ? 'rsa-sha2-512-cert-v01@openssh.com' : cert.type;
    const fileKey = fileKeys.find((k) => k.key.getPublicSSH().equals(cert.publicKey));
    if (fileKey) {
      attempts.push(certificateAttempt(host, { source, certificate: cert, algorithm, sign: async (data) => signWithKey(fileKey.key, cert.keyType, data) }, plan));
      return;
    }
    const agentKey = (await agentKeys()).find((k) => k.blob.equals(cert.publicKey) || k.blob.equals(cert.blob));
    if (agentKey && host.agent) {
      const socket = host.agent;
      attempts.push(certificateAttempt(host, { source, certificate: cert, algorithm, sign: (data) => agentSign(socket, agentKey.blob, data, cert.keyType === 'ssh-rsa' ? AGENT_RSA_SHA2_512 : 0) }, plan));
      return;
    }
    plan.certificateProblems.push({
      kind: 'no-private-key',
      source,
      message: `${source}: ${describeCertificate(cert)}: no identity file${host.agent ? ' or agent key' : ''} holds its private key`,
    });
  };

  const files = [...host.certificateFiles, ...fileKeys.map((k) => `${k.file}-cert.pub`).filter((f) => !host.certificateFiles.includes(f) && existsSync(f))];
  for (const file of files) {
    let cert: Certificate;
    try {
      cert = parseCertificate(readFileSync(file, 'utf8'));
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (error as Error).message;
      plan.certificateProblems.push({ kind: 'unreadable', source: file, message: `certificate file ${file}: ${reason}` });
      continue;
    }
    await offer(file, cert);
  }
  if (useAgent) {
    for (const identity of await agentKeys()) {
      let cert: Certificate;
      try {
        cert = parseCertificate(identity.blob);
      } catch {
        continue; // a plain key: ssh2's agent method below offers those
      }
      await offer(`ssh-agent (${identity.comment || 'certificate'})`, cert);
    }
    attempts.push({ label: `ssh-agent (${host.agent})`, method: { type: 'agent', username: host.user, agent: host.agent! } });
  }
  for (const { file, key } of fileKeys) attempts.push({ label: file, method: { type: 'publickey', username: host.user, key } });
  return attempts;
}

/** The SSH signature blob for a file key, as sshd's verifier for the plain key type reads it. */
function signWithKey(key: ParsedKey, keyType: string, data: Buffer): Buffer {
  if (keyType === 'ssh-ed25519') return Buffer.concat([sshString('ssh-ed25519'), sshString(asBuffer(key.sign(data)))]);
  if (keyType === 'ssh-rsa') return Buffer.concat([sshString('rsa-sha2-512'), sshString(asBuffer(key.sign(data, 'sha512')))]);
  // ECDSA: SSH wants string(mpint r, mpint s); IEEE P1363 gives r||s of fixed width.
  const hash = keyType.endsWith('256') ? 'sha256' : keyType.endsWith('384') ? 'sha384' : 'sha512';
  const raw = cryptoSign(hash, data, { key: key.getPrivatePEM(), dsaEncoding: 'ieee-p1363' });
  const half = raw.length / 2;
  const mpint = (b: Buffer): Buffer => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const trimmed = b.subarray(i);
    return sshString(trimmed[0]! & 0x80 ? Buffer.concat([Buffer.alloc(1), trimmed]) : trimmed);
  };
  return Buffer.concat([sshString(keyType), sshString(Buffer.concat([mpint(raw.subarray(0, half)), mpint(raw.subarray(half))]))]);
}

function asBuffer(signature: Buffer | Error): Buffer {
  if (signature instanceof Error) throw signature;
  return signature;
}

const CERTIFICATE = Symbol('mint-ssh-exec certificate identity');

/**
 * A key object ssh2 accepts (its parsed form of the certified key) that presents the certificate:
 * `type` is the algorithm sent and getPublicSSH() the certificate blob.
 */
function certificateAttempt(host: ResolvedHost, given: CertificateIdentity, plan: AuthPlan): Attempt {
  const plain = ssh2.utils.parseKey(`${given.certificate.keyType} ${given.certificate.publicKey.toString('base64')}`);
  const base = Array.isArray(plain) ? plain[0] : plain;
  if (!base || base instanceof Error) throw new Error(`cannot read the key inside ${given.source}`);
  const identity: CertificateIdentity = {
    ...given,
    sign: (data) =>
      given.sign(data).catch((error: unknown) => {
        plan.skipped.push(`${given.source} (could not sign: ${(error as Error).message})`);
        throw error;
      }),
  };
  const key = Object.create(base, {
    type: { value: identity.algorithm },
    getPublicSSH: { value: () => identity.certificate.blob },
    isPrivateKey: { value: () => true },
    [CERTIFICATE]: { value: identity },
  }) as ParsedKey;
  const label = `${identity.source === 'per-job' ? 'per-job ' : ''}certificate ${identity.source === 'per-job' ? '' : `${identity.source} `}(id ${JSON.stringify(identity.certificate.keyId)}, serial ${identity.certificate.serial})`;
  return { label, method: { type: 'publickey', username: host.user, key }, certificate: identity };
}

/** The parts of ssh2's protocol object the signed certificate request is written with. */
interface ProtocolInternals {
  authPK(username: string, key: unknown, keyAlgo?: unknown, cbSign?: unknown): void;
  _kex: { sessionID: Buffer };
  _authsQueue: string[];
  _packetRW: { write: { alloc(length: number): Buffer; allocStart: number; finalize(packet: Buffer): Buffer } };
}

const require = createRequire(import.meta.url);
const { sendPacket } = require('ssh2/lib/protocol/utils.js') as { sendPacket: (proto: ProtocolInternals, packet: Buffer) => void };

const USERAUTH_REQUEST = 50;

/**
 * Lets one ssh2 client sign in with certificates. Why not through ssh2's API alone: ssh2 writes
 * the request's algorithm name into the signature blob too, and for a certificate the two differ
 * (request: `ssh-ed25519-cert-v01@openssh.com`; signature: `ssh-ed25519`, which sshd's verifier
 * insists on: ssh-ed25519.c's "strcmp(ktype, ...)"). Tried first with a key object alone: sshd
 * logged "Accepted certificate ID ..." and then "Failed publickey". So for our certificate keys
 * only, the signed USERAUTH_REQUEST (RFC 4252 section 7) is written here; the query before it,
 * every plain key and the agent method still go through ssh2 unchanged.
 */
export function enableCertificates(client: Client): void {
  const proto = (client as unknown as { _protocol?: ProtocolInternals })._protocol;
  if (!proto || typeof proto.authPK !== 'function' || !proto._packetRW?.write || typeof sendPacket !== 'function') {
    throw new Error('ssh2 internals changed: certificate login cannot be enabled with this ssh2 version');
  }
  const original = proto.authPK.bind(proto);
  proto.authPK = (username: string, key: unknown, keyAlgo?: unknown, cbSign?: unknown) => {
    const identity = (key as { [CERTIFICATE]?: CertificateIdentity } | null)?.[CERTIFICATE];
    const signer = typeof keyAlgo === 'function' ? keyAlgo : cbSign;
    if (!identity) return original(username, key, keyAlgo, cbSign);
    // The query ("would you accept this certificate?") carries no signature: ssh2's is right.
    if (typeof signer !== 'function') return original(username, key, identity.algorithm);
    const body = Buffer.concat([
      Buffer.from([USERAUTH_REQUEST]),
      sshString(username),
      sshString('ssh-connection'),
      sshString('publickey'),
      Buffer.from([1]),
      sshString(identity.algorithm),
      sshString(identity.certificate.blob),
    ]);
    const send = (signature: Buffer): void => {
      const payload = Buffer.concat([body, sshString(signature)]);
      const packet = proto._packetRW.write.alloc(payload.length);
      payload.copy(packet, proto._packetRW.write.allocStart);
      proto._authsQueue.push('publickey');
      sendPacket(proto, proto._packetRW.write.finalize(packet));
    };
    identity
      .sign(Buffer.concat([sshString(proto._kex.sessionID), body]))
      // A key that cannot sign (agent refused) sends an empty signature: the server fails this
      // attempt and the next method is tried, as after any refusal.
      .then(send, () => send(Buffer.concat([sshString(identity.algorithm), sshString(Buffer.alloc(0))])));
  };
}
