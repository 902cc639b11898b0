/**
 * The parent side of the rsync bridge: a Unix socket in a fresh 0700 directory, accepting only
 * shims that present this bridge's random token, each relayed into its own exec channel on the one
 * SSH connection. Another local user can neither reach the socket (directory mode) nor guess the
 * token, so nobody else can ride our authenticated session.
 */
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { ClientChannel } from 'ssh2';
import type { Connection } from '../connection/connect.js';

const FRAME_STDOUT = 1;
const FRAME_STDERR = 2;
const FRAME_EXIT = 3;
const MAX_HEADER = 64 * 1024;

/**
 * Decides, from the argv rsync gave its remote shell, which gateway line to run (or refuses).
 * `answer: true` is for `take`: the channel outlives rsync (see BridgeSession.answer).
 */
export type RouteFn = (argv: string[]) => { command: string; answer?: boolean } | { error: string };

interface RelayState {
  exitCode: number | undefined;
  stderr: string;
  refused: string | undefined;
  /** Set while a `take` channel waits for the client's answer. */
  answer?: (remove: boolean) => Promise<void>;
}

export interface BridgeSession {
  /** Environment for the rsync process. */
  env: Record<string, string>;
  /** Resolves with the remote exit status of the last relayed channel, and its stderr. */
  remote: () => { exitCode: number | undefined; stderr: string; refused: string | undefined };
  /**
   * For `take`: once the local rsync has exited, tells the gateway whether to remove the job
   * (only after a clean local exit) and waits for the channel to close. Then `remote().stderr`
   * holds the gateway's `removed` line if it did.
   */
  answer: (remove: boolean) => Promise<void>;
  close: () => void;
}

export class RshBridge {
  private readonly dir: string;
  private readonly socketPath: string;
  private readonly server: net.Server;
  private readonly routes = new Map<string, { route: RouteFn; state: RelayState }>();
  private readonly connection: Connection;
  private readonly sockets = new Set<net.Socket>();

  private constructor(connection: Connection, dir: string) {
    this.connection = connection;
    this.dir = dir;
    this.socketPath = join(dir, 'rsh.sock');
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  static async open(connection: Connection): Promise<RshBridge> {
    // mkdtemp creates the directory with mode 0700.
    const dir = await mkdtemp(join(tmpdir(), 'mint-rsh-'));
    const bridge = new RshBridge(connection, dir);
    await new Promise<void>((resolve, reject) => {
      bridge.server.once('error', reject);
      bridge.server.listen(bridge.socketPath, () => resolve());
    });
    return bridge;
  }

  /** One rsync run: a token of its own, and the route its shim may take. */
  session(route: RouteFn): BridgeSession {
    const token = randomBytes(32).toString('hex');
    const state: RelayState = { exitCode: undefined, stderr: '', refused: undefined };
    this.routes.set(token, { route, state });
    return {
      env: { MINT_RSH_SOCKET: this.socketPath, MINT_RSH_TOKEN: token },
      remote: () => state,
      answer: async (remove) => {
        const answer = state.answer;
        state.answer = undefined;
        await answer?.(remove);
      },
      close: () => {
        void state.answer?.(false);
        this.routes.delete(token);
      },
    };
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let header = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      header = Buffer.concat([header, chunk]);
      const first = header.indexOf(10);
      const second = first < 0 ? -1 : header.indexOf(10, first + 1);
      if (second < 0) {
        if (header.length > MAX_HEADER) socket.destroy();
        return;
      }
      socket.off('data', onData);
      socket.pause();
      const token = header.subarray(0, first).toString('utf8');
      const rest = header.subarray(second + 1);
      const entry = this.lookup(token);
      if (!entry) {
        // Not ours: say nothing useful, close.
        socket.destroy();
        return;
      }
      let argv: string[];
      try {
        const parsed = JSON.parse(header.subarray(first + 1, second).toString('utf8')) as { argv?: unknown };
        if (!Array.isArray(parsed.argv) || !parsed.argv.every((a) => typeof a === 'string')) throw new Error('bad argv');
        argv = parsed.argv as string[];
      } catch {
        socket.destroy();
        return;
      }
      const decision = entry.route(argv);
      if ('error' in decision) {
        entry.state.refused = decision.error;
        writeFrame(socket, FRAME_STDERR, Buffer.from(`mint-ssh-exec: ${decision.error}\n`));
        writeExit(socket, 12);
        return;
      }
      this.connection.exec(decision.command).then(
        (channel) => relay(socket, channel, rest, entry.state, decision.answer === true),
        (error: Error) => {
          entry.state.refused = error.message;
          writeFrame(socket, FRAME_STDERR, Buffer.from(`mint-ssh-exec: ${error.message}\n`));
          writeExit(socket, 255);
        },
      );
    };
    socket.on('data', onData);
  }

  private lookup(token: string): { route: RouteFn; state: RelayState } | undefined {
    const given = Buffer.from(token);
    for (const [known, entry] of this.routes) {
      const expected = Buffer.from(known);
      if (given.length === expected.length && timingSafeEqual(given, expected)) return entry;
    }
    return undefined;
  }
}

function relay(socket: net.Socket, channel: ClientChannel, early: Buffer, state: RelayState, answered: boolean): void {
  if (early.length) channel.write(early);
  // stdin EOF must become SSH EOF (end), not a channel close, or rsync's last bytes are lost. A
  // `take` channel stays open after rsync for the answer, so the shim's end does not end it.
  socket.pipe(channel, { end: !answered });
  socket.resume();
  // `take`: the gateway's `sent` line is rsync's end; the shim exits with its status while the
  // channel waits for the answer.
  let sent: number | undefined;
  let seen = 0;
  const closed = new Promise<void>((resolve) => channel.once('close', () => resolve()));
  channel.on('data', (chunk: Buffer) => {
    if (!writeFrame(socket, FRAME_STDOUT, chunk)) {
      channel.pause();
      socket.once('drain', () => channel.resume());
    }
  });
  channel.stderr.on('data', (chunk: Buffer) => {
    if (state.stderr.length < 65536) state.stderr += chunk.toString('utf8');
    if (sent === undefined) writeFrame(socket, FRAME_STDERR, chunk);
    if (!answered || sent !== undefined) return;
    for (let end = state.stderr.indexOf('\n', seen); end >= 0 && sent === undefined; end = state.stderr.indexOf('\n', seen)) {
      const m = /^mint-gw: sent: job=\S+ rsync=(\d+)$/.exec(state.stderr.slice(seen, end));
      seen = end + 1;
      if (!m) continue;
      sent = Number(m[1]);
      state.exitCode = sent;
      socket.unpipe(channel);
      state.answer = async (remove) => {
        if (remove) channel.end('remove\n');
        else channel.close();
        await closed;
      };
      writeExit(socket, sent);
    }
  });
  channel.on('exit', (code: number | null) => {
    if (sent === undefined) state.exitCode = code ?? undefined;
  });
  channel.on('close', (code?: number | null) => {
    state.answer = undefined;
    if (sent !== undefined) return;
    // `exit` may have fired before this listener existed; `close` carries the status too.
    state.exitCode ??= code ?? undefined;
    // Unpipe first: a late write into a closed channel throws.
    socket.unpipe(channel);
    writeExit(socket, state.exitCode ?? -1);
  });
  socket.on('close', () => {
    socket.unpipe(channel);
    if (sent === undefined) channel.close();
  });
}

function writeFrame(socket: net.Socket, type: number, payload: Buffer): boolean {
  if (socket.destroyed || socket.writableEnded) return true;
  const head = Buffer.allocUnsafe(5);
  head[0] = type;
  head.writeUInt32BE(payload.length, 1);
  socket.cork();
  socket.write(head);
  const ok = socket.write(payload);
  socket.uncork();
  return ok;
}

function writeExit(socket: net.Socket, code: number): void {
  if (socket.destroyed || socket.writableEnded) return;
  const payload = Buffer.allocUnsafe(4);
  payload.writeInt32BE(code, 0);
  writeFrame(socket, FRAME_EXIT, payload);
  socket.end();
}
