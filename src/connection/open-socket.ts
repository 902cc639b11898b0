/**
 * The byte stream ssh2 talks over. ssh2 never sets TCP_NODELAY on sockets it makes, and Nagle then
 * holds back every small packet of a request/reply verb (measured here: ~88 ms per command), so we
 * always hand ssh2 a socket of our own with noDelay, including the hop sockets of ProxyJump.
 */
import net from 'node:net';
import { spawn } from 'node:child_process';
import { Duplex } from 'node:stream';
import { ConnectError } from '../errors.js';

export interface TcpTarget {
  host: string;
  port: number;
  timeoutMs: number;
  /** For error messages: the name the user knows the host by. */
  label: string;
}

export function openTcp(target: TcpTarget, signal?: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port, noDelay: true });
    const fail = (error: Error): void => {
      cleanup();
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => {
      fail(
        new ConnectError('CONNECT_TIMEOUT', `no TCP connection to ${target.host}:${target.port} within ${target.timeoutMs} ms`, {
          host: target.label,
          hint: 'check the host name and port, and any firewall or proxy between here and there',
        }),
      );
    }, target.timeoutMs);
    const onAbort = (): void => fail(new ConnectError('CONNECT_TIMEOUT', 'connection attempt aborted', { host: target.label }));
    const onError = (error: NodeJS.ErrnoException): void => fail(socketError(error, target));
    const onConnect = (): void => {
      cleanup();
      socket.setNoDelay(true);
      resolve(socket);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      socket.off('connect', onConnect);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', onError);
    socket.once('connect', onConnect);
  });
}

function socketError(error: NodeJS.ErrnoException, target: TcpTarget): ConnectError {
  const where = `${target.host}:${target.port}`;
  const reasons: Record<string, string> = {
    ECONNREFUSED: `connection refused by ${where} (no sshd listening there)`,
    ENOTFOUND: `cannot resolve host name ${target.host}`,
    EAI_AGAIN: `cannot resolve host name ${target.host} (temporary DNS failure)`,
    EHOSTUNREACH: `no route to ${where}`,
    ENETUNREACH: `network unreachable for ${where}`,
    ETIMEDOUT: `connection to ${where} timed out`,
    ECONNRESET: `connection to ${where} was reset`,
  };
  const message = reasons[error.code ?? ''] ?? `cannot connect to ${where}: ${error.message}`;
  // A name the resolver says does not exist will not exist on the next try either: say so at once
  // (it used to be retried 5 times over 13 s with "check that the host is up").
  if (error.code === 'ENOTFOUND') {
    return new ConnectError(
      'HOST_UNREACHABLE',
      message,
      { host: target.label, cause: error, hint: `check the host name "${target.host}": HostName in the profile or ~/.ssh/config, or a typo in the profile's name` },
      false,
    );
  }
  return new ConnectError('HOST_UNREACHABLE', message, {
    host: target.label,
    cause: error,
    hint: 'check that the host is up and that HostName/Port (profile or ~/.ssh/config) are right',
  });
}

/**
 * ProxyCommand, as OpenSSH runs it: through the local shell, its stdin/stdout becoming the
 * connection. The command comes from the user's own config, so a shell is right here.
 */
export function openProxyCommand(command: string, label: string): { stream: Duplex; stderr: () => string } {
  const child = spawn('/bin/sh', ['-c', `exec ${command}`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    if (stderr.length < 4096) stderr += chunk;
  });
  const stream = Duplex.from({ readable: child.stdout, writable: child.stdin });
  child.on('error', (error) => {
    stream.destroy(new ConnectError('PROXY_FAILED', `ProxyCommand failed to start: ${error.message}`, { host: label, cause: error }));
  });
  child.on('exit', (code) => {
    if (code !== 0 && code !== null) {
      stream.destroy(
        new ConnectError('PROXY_FAILED', `ProxyCommand exited with code ${code}${stderr ? `: ${stderr.trim()}` : ''}`, {
          host: label,
          hint: 'run the ProxyCommand by hand to see why it cannot reach the host',
        }),
      );
    }
  });
  stream.on('close', () => {
    if (child.exitCode === null) child.kill();
  });
  return { stream, stderr: () => stderr };
}
