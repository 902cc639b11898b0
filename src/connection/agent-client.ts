/**
 * The two ssh-agent requests certificates need (draft-miller-ssh-agent): list identities and sign.
 * ssh2's own agent client drops every identity whose blob its key parser cannot read, and it cannot
 * read certificates, so an agent-held `-cert` identity never reached the server through it.
 */
import net from 'node:net';
import { sshString } from './certificate.js';

const FAILURE = 5;
const REQUEST_IDENTITIES = 11;
const IDENTITIES_ANSWER = 12;
const SIGN_REQUEST = 13;
const SIGN_RESPONSE = 14;
/** Sign flags: ask for rsa-sha2-512 instead of SHA-1 ssh-rsa, which OpenSSH 8.8+ refuses. */
export const AGENT_RSA_SHA2_512 = 4;

export interface AgentIdentity {
  blob: Buffer;
  comment: string;
}

function request(socketPath: string, type: number, payload: Buffer, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let data = Buffer.alloc(0);
    const fail = (error: Error): void => {
      socket.destroy();
      reject(error);
    };
    socket.setTimeout(timeoutMs, () => fail(new Error(`ssh-agent at ${socketPath} did not answer within ${timeoutMs} ms`)));
    socket.on('error', (error) => fail(new Error(`ssh-agent at ${socketPath}: ${error.message}`)));
    socket.on('connect', () => {
      const header = Buffer.alloc(5);
      header.writeUInt32BE(payload.length + 1);
      header[4] = type;
      socket.write(Buffer.concat([header, payload]));
    });
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length < 4) return;
      const length = data.readUInt32BE(0);
      if (length > 256 * 1024) return fail(new Error('ssh-agent answer too large'));
      if (data.length < 4 + length) return;
      socket.end();
      resolve(data.subarray(4, 4 + length));
    });
  });
}

function readString(buffer: Buffer, offset: number): [Buffer, number] {
  if (offset + 4 > buffer.length) throw new Error('malformed ssh-agent answer');
  const length = buffer.readUInt32BE(offset);
  if (offset + 4 + length > buffer.length) throw new Error('malformed ssh-agent answer');
  return [buffer.subarray(offset + 4, offset + 4 + length), offset + 4 + length];
}

export async function agentIdentities(socketPath: string): Promise<AgentIdentity[]> {
  const answer = await request(socketPath, REQUEST_IDENTITIES, Buffer.alloc(0));
  if (answer[0] !== IDENTITIES_ANSWER) throw new Error('ssh-agent refused to list its keys');
  const count = answer.readUInt32BE(1);
  const out: AgentIdentity[] = [];
  let offset = 5;
  for (let i = 0; i < count; i++) {
    const [blob, next] = readString(answer, offset);
    const [comment, after] = readString(answer, next);
    out.push({ blob: Buffer.from(blob), comment: comment.toString('utf8') });
    offset = after;
  }
  return out;
}

/** The agent's signature blob (string type, string signature) over `data` with the key `blob`. */
export async function agentSign(socketPath: string, blob: Buffer, data: Buffer, flags: number): Promise<Buffer> {
  const flagBytes = Buffer.alloc(4);
  flagBytes.writeUInt32BE(flags);
  const answer = await request(socketPath, SIGN_REQUEST, Buffer.concat([sshString(blob), sshString(data), flagBytes]));
  if (answer[0] === FAILURE) throw new Error('ssh-agent refused to sign (key removed, or confirmation declined)');
  if (answer[0] !== SIGN_RESPONSE) throw new Error('unexpected ssh-agent answer to a sign request');
  return Buffer.from(readString(answer, 1)[0]);
}
