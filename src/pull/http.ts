/**
 * HTTPS to the hub with a bearer token, for the submit side and the agent alike: JSON requests,
 * streamed uploads and downloads, and every failure as the package's typed errors. What retrying
 * can cure (the hub unreachable, restarting, a dropped response) is a retryable ConnectError, so
 * JobSession.step and the agent's loop retry it with backoff; what it cannot (a refused token, a
 * job that is not there, a request in the wrong state) is not.
 */
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { AuthError, ConfigError, ConnectError, GatewayError, InputError, MintSshError } from '../errors.js';

export interface HubTarget {
  /** https://host:port */
  hub: string;
  /** The bearer token: a site's (agent) or a submit token (MInt side). */
  token: string;
  /** PEM of the CA that signed the hub's certificate (`hub init` makes one); default the system's. */
  ca?: string;
  /** A name for errors: the profile's, or the site's. */
  name: string;
}

export function readToken(file: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`${what}: cannot read token file ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  const token = text.trim();
  if (!/^[A-Za-z0-9_.-]{16,256}$/.test(token)) throw new ConfigError(`${what}: token file ${file} does not hold a token`);
  return token;
}

export function readCa(file: string | undefined, what: string): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`${what}: cannot read CA file ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
}

export interface RequestOptions {
  json?: unknown;
  body?: Readable;
  query?: Record<string, string | number | undefined>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Gives up on a hub that sends nothing for this long (default 60 s; long-polls add their wait). */
  idleMs?: number;
}

export class HubHttp {
  readonly target: HubTarget;
  private readonly agent: https.Agent;
  private readonly base: URL;

  constructor(target: HubTarget) {
    this.target = target;
    let base: URL;
    try {
      base = new URL(target.hub);
    } catch {
      throw new ConfigError(`hub ${JSON.stringify(target.hub)} is not a URL`);
    }
    if (base.protocol !== 'https:') throw new ConfigError(`hub ${target.hub} must be an https:// URL (tokens never travel in clear)`);
    this.base = base;
    // keepAlive: a job's steps reuse one TLS connection, as SSH mode reuses one SSH connection.
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 16, ...(target.ca ? { ca: target.ca } : {}) });
  }

  close(): void {
    this.agent.destroy();
  }

  /** The response, its body unread; a status of 400 or more is thrown as a typed error. */
  async stream(method: string, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    const url = new URL(path, this.base);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { authorization: `Bearer ${this.target.token}`, ...(options.headers ?? {}) };
    let payload: Buffer | undefined;
    if (options.json !== undefined) {
      payload = Buffer.from(JSON.stringify(options.json));
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    } else if (options.body) {
      headers['content-type'] = 'application/octet-stream';
    }
    const name = this.target.name;
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = https.request(url, { method, headers, agent: this.agent, ...(options.signal ? { signal: options.signal } : {}) }, resolve);
      req.setTimeout(options.idleMs ?? 60_000, () => req.destroy(Object.assign(new Error('the hub sent nothing in time'), { code: 'ETIMEDOUT' })));
      req.on('error', (error: NodeJS.ErrnoException) => reject(networkError(error, name, this.base.host, options.signal)));
      if (payload) req.end(payload);
      else if (options.body) {
        options.body.on('error', (error) => req.destroy(error));
        options.body.pipe(req);
      } else req.end();
    });
    if (response.statusCode! < 400) return response;
    const text = await readAll(response, 64 * 1024).catch(() => '');
    throw httpError(response.statusCode!, text, name);
  }

  /** A JSON request and its JSON answer. */
  async call<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.stream(method, path, options);
    const text = await readAll(response, 16 * 1024 * 1024).catch((error: unknown) => {
      throw networkError(error as NodeJS.ErrnoException, this.target.name, this.base.host, options.signal);
    });
    try {
      return (text ? JSON.parse(text) : {}) as T;
    } catch {
      throw new GatewayError('GATEWAY_PROTOCOL', `the hub at ${this.target.hub} answered ${method} ${path} with something other than JSON`, { host: this.target.name });
    }
  }
}

export function readAll(stream: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) chunks.push(chunk);
    });
    stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stream.on('error', reject);
    stream.on('aborted', () => reject(Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })));
  });
}

function networkError(error: NodeJS.ErrnoException, name: string, where: string, signal: AbortSignal | undefined): MintSshError {
  if (error instanceof MintSshError) return error;
  if (signal?.aborted && signal.reason instanceof MintSshError) return signal.reason;
  const code = error.code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME|ALTNAME/.test(code) || /certificate/i.test(error.message)) {
    return new AuthError(`the hub at ${where} presented a certificate this side does not trust (${code || error.message})`, {
      host: name,
      hint: 'give the hub\'s CA (its DATA/ca.pem from `hub init`) as the profile\'s hubCa or the agent\'s --ca',
    });
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new ConnectError('HOST_UNREACHABLE', `cannot resolve the hub ${where} (${code})`, { host: name });
  if (code === 'ETIMEDOUT') return new ConnectError('CONNECT_TIMEOUT', `the hub at ${where} did not answer in time`, { host: name });
  return new ConnectError('CONNECTION_LOST', `hub ${where}: ${code || error.message}`, { host: name, cause: error });
}

/** The hub's refusals (`{"error":{"code":"E_X","message":"..."}}`) as typed errors. */
function httpError(status: number, text: string, name: string): MintSshError {
  let code = '';
  let message = text.slice(0, 300);
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
    code = parsed.error?.code ?? '';
    message = parsed.error?.message ?? message;
  } catch {
    // not JSON: a proxy's page; its first bytes say enough
  }
  if (status === 401 || status === 403) return new AuthError(`the hub refused the token: ${message}`, { host: name, hint: 'a site\'s token comes from `mint-ssh-exec hub add-site`, a submit token from `hub init`/`hub add-submitter`; a revoked one never works again' });
  if (status === 400 && code === 'E_USAGE') return new InputError(`the hub refused the request: ${message}`, { host: name });
  if (status >= 500 || status === 408 || status === 429) {
    return new ConnectError('CONNECTION_LOST', `the hub answered ${status}: ${message}`, { host: name });
  }
  return new GatewayError('GATEWAY_REFUSED', `hub refused: ${code || status}: ${message}`, { host: name, ...(code ? { gatewayCode: code } : {}) });
}
