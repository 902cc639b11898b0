/**
 * One authenticated SSH connection, the only one a job uses. ssh2 is kept behind this module: the
 * rest of the package sees `Connection` and typed errors, never ssh2's error objects.
 */
import { Client, type ClientChannel } from 'ssh2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { AuthError, ConnectError, MintSshError, type HostKeyError } from '../errors.js';
import type { ResolvedHost } from '../config/resolved-host.js';
import { openProxyCommand, openTcp } from './open-socket.js';
import { verifyHostKey } from './host-key.js';
import { enableCertificates, planAuth } from './auth.js';
import { describeCertificate } from './certificate.js';

/** An open exec channel. Named here so that no module outside connection/ imports ssh2. */
export type Channel = ClientChannel;

export interface ConnectOptions {
  signal?: AbortSignal;
  /** Resolves one ProxyJump hop (`[user@]host[:port]`) the way the top-level host was resolved. */
  resolveJump?: (spec: string) => Promise<ResolvedHost>;
  /** Receives the server's identification string (e.g. `SSH-2.0-OpenSSH_9.2p1`). */
  onServerIdent?: (ident: string) => void;
}

// AES-GCM first: hardware-accelerated on every CPU MInt runs on, and the cipher OpenSSH's
// benchmarks here used, so speed comparisons are like for like.
const CIPHERS = [
  'aes128-gcm@openssh.com',
  'aes256-gcm@openssh.com',
  'chacha20-poly1305@openssh.com',
  'aes128-ctr',
  'aes256-ctr',
] as const;

const DEFAULT_CAPACITY = 10;

class ChannelRefused extends Error {}

/** Clients whose host key was not known and was recorded (accept-new): a first contact, not a verification. */
const firstContact = new WeakSet<object>();

export class Connection {
  readonly host: ResolvedHost;
  readonly client: Client;
  /** The transport ssh2 writes its packets to. */
  private readonly stream: Duplex;
  private readonly hops: Connection[];
  private lostError: MintSshError | undefined;
  private closedFlag = false;
  private readonly closeListeners = new Set<(error: MintSshError | undefined) => void>();

  /** The host key was not known and was recorded now (accept-new): a first contact, not a verification. */
  readonly hostKeyRecorded: boolean;

  constructor(host: ResolvedHost, client: Client, stream: Duplex, hops: Connection[]) {
    this.hostKeyRecorded = firstContact.has(client);
    this.host = host;
    this.client = client;
    this.stream = stream;
    this.hops = hops;
    client.on('error', (error: Error & { level?: string }) => {
      this.lostError ??= new ConnectError('CONNECTION_LOST', `connection to ${host.name} lost: ${error.message}`, { host: host.name, cause: error });
    });
    client.on('close', () => {
      this.closedFlag = true;
      for (const wake of this.waiting.splice(0)) wake();
      const error = this.lostError ?? (this.closingOnPurpose ? undefined : new ConnectError('CONNECTION_LOST', `connection to ${host.name} closed by the remote side`, { host: host.name }));
      for (const listener of this.closeListeners) listener(error);
      this.closeListeners.clear();
    });
  }

  private closingOnPurpose = false;

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Calls back once when the connection ends; with an error unless we closed it ourselves. */
  onClose(listener: (error: MintSshError | undefined) => void): () => void {
    if (this.closedFlag) {
      listener(this.lostError);
      return () => undefined;
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /**
   * Channels this connection may have open at once. OpenSSH's MaxSessions defaults to 10; when the
   * server refuses a channel ("open failed"), the limit drops to what was open then: learnt, not
   * assumed beyond the default.
   */
  capacity = DEFAULT_CAPACITY;
  private open = 0;
  private readonly waiting: (() => void)[] = [];

  get openChannels(): number {
    return this.open;
  }

  /**
   * Runs `write` with the transport corked: ssh2 writes every 32 KiB packet on its own, and a
   * bulk write of many packets then costs one system call instead of one per packet.
   */
  batch<T>(write: () => T): T {
    this.stream.cork();
    try {
      return write();
    } finally {
      this.stream.uncork();
    }
  }

  /** Opens an exec channel. The command is a gateway line; the forced command decides the rest. */
  async exec(command: string): Promise<ClientChannel> {
    for (;;) {
      if (this.closedFlag) {
        throw this.lostError ?? new ConnectError('CONNECTION_LOST', `connection to ${this.host.name} is closed`, { host: this.host.name });
      }
      if (this.open >= this.capacity) {
        // Fair: channels are handed out in the order they were asked for.
        await new Promise<void>((resolve) => this.waiting.push(resolve));
        continue;
      }
      this.open += 1;
      try {
        const channel = await this.openChannel(command);
        channel.once('close', () => this.releaseSlot());
        return channel;
      } catch (error) {
        this.releaseSlot();
        if (error instanceof ChannelRefused && this.open > 0) {
          this.capacity = Math.max(1, this.open);
          continue;
        }
        throw error instanceof ChannelRefused ? new ConnectError('CONNECTION_LOST', error.message, { host: this.host.name, cause: error }) : error;
      }
    }
  }

  private releaseSlot(): void {
    this.open -= 1;
    this.waiting.shift()?.();
  }

  private openChannel(command: string): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      this.client.exec(command, (error: (Error & { reason?: number }) | undefined, channel) => {
        if (!error) {
          resolve(channel);
          return;
        }
        // A refused session channel means the server's MaxSessions: OpenSSH answers CONNECT_FAILED
        // (2) "open failed"; others use ADMINISTRATIVELY_PROHIBITED (1) or RESOURCE_SHORTAGE (4).
        if (error.reason === 1 || error.reason === 2 || error.reason === 4) {
          reject(new ChannelRefused(`${this.host.name} refused a new channel (${error.message})`));
          return;
        }
        reject(new ConnectError('CONNECTION_LOST', `cannot open a channel on ${this.host.name}: ${error.message}`, { host: this.host.name, cause: error }));
      });
    });
  }

  close(): void {
    this.closingOnPurpose = true;
    this.client.end();
    for (const hop of this.hops) hop.close();
  }
}

/**
 * One bound for reaching the host, with OpenSSH's ConnectTimeout semantics and a little more:
 * `connectTimeoutMs` counts from the start of the TCP connect and covers the server's banner (as
 * OpenSSH's does) and the rest of the handshake (key exchange, authentication: ssh2's readyTimeout).
 * Before, the TCP connect and the handshake each had the whole bound, and a port that accepted but
 * never spoke was retried 5 times: 134 s at the 20 s default (issue 14, item 9).
 */
export async function connect(host: ResolvedHost, options: ConnectOptions = {}): Promise<Connection> {
  const hops: Connection[] = [];
  const deadline = performance.now() + host.connectTimeoutMs;
  try {
    const sock = await openStream(host, options, hops);
    // Through a proxy, the hops had their own bounds (as each ssh of a ProxyJump chain has its
    // own ConnectTimeout): the target's handshake gets the whole of its own.
    const proxied = Boolean(host.proxyJump || host.proxyCommand);
    const left = proxied ? host.connectTimeoutMs : Math.max(1, Math.round(deadline - performance.now()));
    const client = await handshake(host, sock, options.signal, options.onServerIdent, left);
    return new Connection(host, client, sock, hops);
  } catch (error) {
    for (const hop of hops) hop.close();
    throw error;
  }
}

async function openStream(host: ResolvedHost, options: ConnectOptions, hops: Connection[]): Promise<Duplex> {
  if (host.proxyJump) {
    if (!options.resolveJump) throw new ConnectError('PROXY_FAILED', 'ProxyJump given but no way to resolve the jump host', { host: host.name });
    // Hops are reached in order; each next hop is forwarded through the previous one.
    let previous: Connection | undefined;
    for (const spec of host.proxyJump.split(',').map((s) => s.trim()).filter(Boolean)) {
      const hopHost = await options.resolveJump(spec);
      const hop = previous
        ? await handshakeOver(hopHost, await forward(previous, hopHost.hostname, hopHost.port), options.signal)
        : await connect({ ...hopHost, proxyJump: undefined }, { ...(options.signal ? { signal: options.signal } : {}) });
      hops.push(hop);
      previous = hop;
    }
    if (!previous) throw new ConnectError('PROXY_FAILED', `empty ProxyJump for ${host.name}`, { host: host.name });
    return forward(previous, host.hostname, host.port);
  }
  if (host.proxyCommand) {
    return openProxyCommand(host.proxyCommand, host.name).stream;
  }
  return openTcp({ host: host.hostname, port: host.port, timeoutMs: host.connectTimeoutMs, label: host.name }, options.signal);
}

async function handshakeOver(host: ResolvedHost, sock: Duplex, signal: AbortSignal | undefined): Promise<Connection> {
  return new Connection(host, await handshake(host, sock, signal, undefined, host.connectTimeoutMs), sock, []);
}

function forward(via: Connection, hostname: string, port: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    via.client.forwardOut('127.0.0.1', 0, hostname, port, (error, stream) => {
      if (error) {
        reject(new ConnectError('PROXY_FAILED', `jump host ${via.host.name} could not reach ${hostname}:${port}: ${error.message}`, { host: via.host.name, cause: error }));
        return;
      }
      resolve(stream);
    });
  });
}

function handshake(
  host: ResolvedHost,
  sock: Duplex,
  signal: AbortSignal | undefined,
  onServerIdent: ((ident: string) => void) | undefined,
  timeoutMs: number,
): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const auth = planAuth(host);
    let hostKeyError: HostKeyError | undefined;
    let settled = false;
    const finish = (error?: Error): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (error) {
        client.removeAllListeners('ready');
        client.on('error', () => undefined);
        client.end();
        sock.destroy();
        reject(error);
      } else {
        resolve(client);
      }
    };
    const onAbort = (): void => finish(new ConnectError('CONNECT_TIMEOUT', 'connection attempt aborted', { host: host.name }));
    signal?.addEventListener('abort', onAbort, { once: true });
    sock.on('error', (error: Error) => {
      if (error instanceof MintSshError) finish(error);
    });
    client.once('ready', () => finish());
    client.on('error', (error: Error & { level?: string }) => {
      if (settled) return;
      if (hostKeyError) return finish(hostKeyError);
      finish(mapHandshakeError(host, error, auth, sock, timeoutMs));
    });
    client.on('close', () => finish(hostKeyError ?? new ConnectError('CONNECTION_LOST', `${host.name} closed the connection during the handshake`, { host: host.name })));
    client.connect({
      sock,
      username: host.user,
      readyTimeout: timeoutMs,
      keepaliveInterval: host.keepaliveIntervalMs,
      keepaliveCountMax: host.keepaliveCountMax,
      authHandler: auth.handler,
      algorithms: { cipher: [...CIPHERS] },
      ...(onServerIdent
        ? {
            debug: (message: string) => {
              const m = /Remote ident: '(.*)'/.exec(message);
              if (m) onServerIdent(m[1]!);
            },
          }
        : {}),
      hostVerifier: (key: Buffer) => {
        hostKeyError = verifyHostKey(host, key, () => firstContact.add(client));
        return hostKeyError === undefined;
      },
    });
    try {
      enableCertificates(client);
    } catch (error) {
      finish(new AuthError((error as Error).message, { host: host.name, cause: error }));
    }
  });
}

function mapHandshakeError(host: ResolvedHost, error: Error & { level?: string }, auth: ReturnType<typeof planAuth>, sock: Duplex, timeoutMs: number): MintSshError {
  const context = { host: host.name, cause: error };
  switch (error.level) {
    case 'client-authentication': {
      const offered = auth.tried.length ? auth.tried.join(', ') : 'no usable key';
      const skipped = auth.skipped.length ? `; skipped ${auth.skipped.join(', ')}` : '';
      // sshd answers a refused certificate as it answers an unknown key: its reason (untrusted CA,
      // principals="" not matching, source-address) is only in its own log.
      const problems = [
        ...auth.certificateProblems,
        ...auth.offeredCertificates.map(({ source, certificate }) => ({
          kind: 'refused' as const,
          source,
          message: `${source}: ${describeCertificate(certificate)} was refused by the server, which does not say why`,
        })),
      ];
      const certificates = problems.length ? `; certificates: ${problems.map((p) => p.message).join('; ')}` : '';
      const refused = auth.offeredCertificates.length > 0;
      return new AuthError(`${host.user}@${host.name} refused our keys (offered ${offered}${skipped})${certificates}`, {
        ...context,
        certificateProblems: problems,
        hint: refused
          ? `the site's sshd log says why it refused the certificate (LogLevel VERBOSE); check that it trusts this CA (\`mint-gateway install --cert-authority\`, \`mint-ssh-exec ca show\`) and that its principals="..." lists the certificate's principal`
          : problems.length
            ? 'renew the certificate (or fix its principals) named above; sshd would refuse it'
            : 'the site must add MInt\'s public key with `mint-gateway install`; check User and IdentityFile in the profile or ~/.ssh/config',
      });
    }
    case 'client-timeout': {
      // Not retried (OpenSSH's ConnectionAttempts is 1 too): a server that took the connection and
      // then stalled for the whole bound is not a blip that half a second of backoff cures, and each
      // retry would cost the whole bound again. A TCP socket tells whether the server said anything.
      const where = `${host.hostname}:${host.port}`;
      const silent = sock instanceof net.Socket && sock.bytesRead === 0;
      return silent
        ? new ConnectError(
            'CONNECT_TIMEOUT',
            `${where} accepted the connection but never sent an SSH banner (waited ${host.connectTimeoutMs} ms in all)`,
            { ...context, hint: `${where} does not speak SSH: check Port and HostName for ${host.name} (profile or ~/.ssh/config), or a firewall or proxy that holds connections open; connectTimeoutMs (ConnectTimeout) sets the wait` },
            false,
          )
        : new ConnectError(
            'CONNECT_TIMEOUT',
            `SSH handshake with ${host.name} (${where}) did not finish within ${timeoutMs} ms`,
            { ...context, hint: 'the server answered but stalled: an overloaded sshd, or a proxy holding the connection; connectTimeoutMs (ConnectTimeout) sets the wait' },
            false,
          );
    }
    default:
      return new ConnectError('CONNECTION_LOST', `SSH connection to ${host.name} failed: ${error.message}`, context);
  }
}
