/**
 * The parent side of the rsync bridge. Each rsync run gets a connected pair of Unix sockets: one
 * end stays here, the other is handed to the local rsync as its fd 3, which its remote-shell shim
 * inherits. Nobody else can reach a transfer: the pair is made through a socket in a fresh 0700
 * directory and matched by a random token, and the shim's end is only ever an inherited fd.
 *
 * Our end reads into reused buffers (net's `onread`): a GiB upload would otherwise allocate a
 * GiB of 64 KiB read buffers, and the garbage collection that follows cost more CPU than ssh2's
 * encryption. ssh2 copies what it is given into its packets at once unless the channel's window is
 * closed; only then does it keep the chunk, and its buffer goes back to the pool when the write
 * completes.
 *
 * Wire format. Shim -> parent: a JSON line {"argv": [...]}, then raw stdin bytes, then a
 * half-close. Parent -> shim: frames of [type u8][length u32be][payload]: 1 = stdout bytes,
 * 2 = stderr bytes, 3 = exit status (i32be; -1 when the remote end gave none).
 */
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Channel, Connection } from '../connection/connect.js';
import { splitLines } from '../connection/exec.js';
import { TransferError } from '../errors.js';

const FRAME_STDOUT = 1;
const FRAME_STDERR = 2;
const FRAME_EXIT = 3;
const MAX_HEADER = 64 * 1024;
const READ_BUFFER = 256 * 1024;
/** The fd the shim finds its end on (the first after stdin, stdout and stderr). */
export const SHIM_FD = 3;

/**
 * Decides, from the argv rsync gave its remote shell, which remote command to run (or refuses).
 * `endsOn`, for a channel that outlives rsync (the gateway's `take`): a remote stderr line for which
 * it returns a number ends rsync's part with that exit status, and the channel then waits for the
 * caller's answer (BridgeSession.answer). The bridge knows no gateway line itself.
 */
export type RouteFn = (
  argv: string[],
) => { command: string; endsOn?: (stderrLine: string) => number | undefined; consume?: (stderrLine: string) => boolean } | { error: string };

interface RelayState {
  exitCode: number | undefined;
  stderr: string;
  refused: string | undefined;
  /** Set while a channel that outlives rsync waits for the client's answer. */
  answer?: (reply: string | undefined) => Promise<void>;
}

export interface BridgeSession {
  /** Environment for the rsync process. */
  env: Record<string, string>;
  /** The shim's end: pass it to rsync as stdio[SHIM_FD]; keep it until rsync has exited. */
  shimEnd: net.Socket;
  /** The remote exit status of the relayed channel, its stderr, and why it was refused, if it was. */
  remote: () => { exitCode: number | undefined; stderr: string; refused: string | undefined };
  /**
   * For a channel that outlives rsync (RouteFn's `endsOn`): once the local rsync has exited, sends
   * `reply` and ends the channel's input (or, without a reply, closes the channel) and waits for the
   * channel to close. Then `remote().stderr` holds what the remote side said after that.
   */
  answer: (reply: string | undefined) => Promise<void>;
  close: () => void;
}

export class RshBridge {
  private readonly dir: string;
  private readonly socketPath: string;
  private readonly server: net.Server;
  private readonly connection: Connection;
  private readonly waiting = new Map<string, (socket: net.Socket) => void>();
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

  /** One rsync run: a socket pair of its own, and the route its shim may take. */
  async session(route: RouteFn): Promise<BridgeSession> {
    const token = randomBytes(32).toString('hex');
    const state: RelayState = { exitCode: undefined, stderr: '', refused: undefined };
    const relay = new Relay(this.connection, route, state);
    const ours = net.connect({
      path: this.socketPath,
      allowHalfOpen: true,
      onread: { buffer: () => relay.nextBuffer(), callback: (n, buffer) => relay.onRead(n, buffer) },
    });
    relay.attach(ours);
    const shimEnd = await new Promise<net.Socket>((resolve, reject) => {
      this.waiting.set(token, resolve);
      // A bridge closed under us (its connection died): fail now, not wait forever.
      ours.once('close', () => {
        this.waiting.delete(token);
        reject(new TransferError('the rsync bridge closed before the transfer began', { host: this.connection.host.name }, true));
      });
      this.track(ours);
      ours.write(`${token}\n`);
    });
    return {
      env: { MINT_RSH_FD: String(SHIM_FD) },
      shimEnd,
      remote: () => state,
      answer: async (reply) => {
        const answer = state.answer;
        state.answer = undefined;
        await answer?.(reply);
      },
      close: () => {
        void state.answer?.(undefined);
        this.waiting.delete(token);
        ours.destroy();
        shimEnd.destroy();
      },
    };
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  }

  /** The far end of a pair: it only ever says its token; after that the shim owns it. */
  private accept(socket: net.Socket): void {
    this.track(socket);
    let line = '';
    const onData = (chunk: Buffer): void => {
      line += chunk.toString('latin1');
      const end = line.indexOf('\n');
      if (end < 0) {
        if (line.length > 128) socket.destroy();
        return;
      }
      socket.off('data', onData);
      // Stop reading for good: what arrives on this socket from now on is for the shim.
      socket.pause();
      const resolve = this.waiting.get(line.slice(0, end));
      if (!resolve || end + 1 !== line.length) {
        socket.destroy();
        return;
      }
      this.waiting.delete(line.slice(0, end));
      resolve(socket);
    };
    socket.on('data', onData);
  }
}

/** One transfer: the shim's header, then its bytes into an exec channel and the channel's back. */
class Relay {
  /** Read buffers no write holds any more. */
  private readonly pool: Uint8Array[] = [];
  private socket: net.Socket | undefined;
  private channel: Channel | undefined;
  private header: Buffer | undefined = Buffer.alloc(0);
  private early: Buffer[] = [];
  private endsOn: ((stderrLine: string) => number | undefined) | undefined;
  private consume: ((stderrLine: string) => boolean) | undefined;
  private stdinEnded = false;
  private readonly connection: Connection;
  private readonly route: RouteFn;
  private readonly state: RelayState;

  constructor(connection: Connection, route: RouteFn, state: RelayState) {
    this.connection = connection;
    this.route = route;
    this.state = state;
  }

  attach(socket: net.Socket): void {
    this.socket = socket;
    socket.on('end', () => {
      if (!this.channel) this.stdinEnded = true;
      else if (!this.endsOn) this.channel.end();
    });
  }

  /** onread's buffer for the next read. */
  nextBuffer(): Uint8Array {
    return this.pool.pop() ?? new Uint8Array(READ_BUFFER);
  }

  /** onread's callback: false pauses the socket. */
  onRead(n: number, buffer: Uint8Array): boolean {
    const chunk = Buffer.from(buffer.buffer, buffer.byteOffset, n);
    if (this.header) {
      this.pool.push(buffer);
      return this.readHeader(chunk);
    }
    const channel = this.channel;
    if (!channel) {
      this.early.push(Buffer.from(chunk));
      this.pool.push(buffer);
      return true;
    }
    let free = false;
    const release = (): void => {
      if (free) return;
      free = true;
      this.pool.push(buffer);
    };
    this.connection.batch(() => channel.write(chunk, release));
    // Nothing pending means ssh2 copied it all into packets already; otherwise the buffer comes
    // back when the write completes.
    if (channel.writableLength === 0) release();
    if (channel.writableNeedDrain) {
      this.socket?.pause();
      channel.once('drain', () => this.socket?.resume());
      return false;
    }
    return true;
  }

  private readHeader(chunk: Buffer): boolean {
    const header = Buffer.concat([this.header!, chunk]);
    const end = header.indexOf(10);
    if (end < 0) {
      if (header.length > MAX_HEADER) this.socket?.destroy();
      else this.header = header;
      return true;
    }
    this.header = undefined;
    const rest = header.subarray(end + 1);
    if (rest.length) this.early.push(rest);
    let argv: string[];
    try {
      const parsed = JSON.parse(header.subarray(0, end).toString('utf8')) as { argv?: unknown };
      if (!Array.isArray(parsed.argv) || !parsed.argv.every((a) => typeof a === 'string')) throw new Error('bad argv');
      argv = parsed.argv as string[];
    } catch {
      this.socket?.destroy();
      return true;
    }
    const decision = this.route(argv);
    const socket = this.socket!;
    if ('error' in decision) {
      this.state.refused = decision.error;
      writeFrame(socket, FRAME_STDERR, Buffer.from(`mint-ssh-exec: ${decision.error}\n`));
      writeExit(socket, 12);
      socket.pause();
      return false;
    }
    this.endsOn = decision.endsOn;
    this.consume = decision.consume;
    this.connection.exec(decision.command).then(
      (channel) => this.start(channel),
      (error: Error) => {
        this.state.refused = error.message;
        writeFrame(socket, FRAME_STDERR, Buffer.from(`mint-ssh-exec: ${error.message}\n`));
        writeExit(socket, 255);
      },
    );
    // Paused until the channel is open; bytes already read wait in `early`.
    socket.pause();
    return false;
  }

  private start(channel: Channel): void {
    const socket = this.socket!;
    const state = this.state;
    const endsOn = this.endsOn;
    const answered = endsOn !== undefined;
    this.channel = channel;
    for (const chunk of this.early) channel.write(chunk);
    this.early = [];
    // stdin EOF must become SSH EOF (end), not a channel close, or rsync's last bytes are lost. A
    // `take` channel stays open after rsync for the answer, so the shim's end does not end it.
    if (this.stdinEnded && !answered) channel.end();
    socket.resume();
    // A channel that outlives rsync: the line `endsOn` recognises is rsync's end; the shim exits
    // with its status while the channel waits for the answer.
    let sent: number | undefined;
    const closed = new Promise<void>((resolve) => channel.once('close', () => resolve()));
    channel.on('data', (chunk: Buffer) => {
      if (!writeFrame(socket, FRAME_STDOUT, chunk)) {
        channel.pause();
        socket.once('drain', () => channel.resume());
      }
    });
    // `consume`: lines the caller takes for itself (the gateway's manifest), which neither rsync's
    // stderr nor remote().stderr (capped at 64 KiB) then carries; the rest go on line by line.
    const consume = this.consume;
    const keep = (text: string): void => {
      if (state.stderr.length < 65536) state.stderr += text;
      if (sent === undefined) writeFrame(socket, FRAME_STDERR, Buffer.from(text));
    };
    const consumed = consume
      ? splitLines((line) => {
          if (!consume(line)) keep(`${line}\n`);
        })
      : undefined;
    const stderrLines = endsOn
      ? splitLines((line) => {
          if (sent !== undefined) return;
          sent = endsOn(line);
          if (sent === undefined) return;
          state.exitCode = sent;
          state.answer = async (reply) => {
            if (reply !== undefined) channel.end(reply);
            else channel.close();
            await closed;
          };
          writeExit(socket, sent);
        })
      : undefined;
    channel.stderr.on('data', (chunk: Buffer) => {
      if (consumed) consumed(chunk);
      else {
        if (state.stderr.length < 65536) state.stderr += chunk.toString('utf8');
        if (sent === undefined) writeFrame(socket, FRAME_STDERR, chunk);
      }
      stderrLines?.(chunk);
    });
    channel.on('exit', (code: number | null) => {
      if (sent === undefined) state.exitCode = code ?? undefined;
    });
    channel.on('close', (code?: number | null) => {
      state.answer = undefined;
      if (sent !== undefined) return;
      // `exit` may have fired before this listener existed; `close` carries the status too.
      state.exitCode ??= code ?? undefined;
      writeExit(socket, state.exitCode ?? -1);
    });
    socket.on('close', () => {
      if (sent === undefined) channel.close();
    });
  }
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
