/**
 * A small TCP proxy on 127.0.0.1 that sits between the client and sshd and breaks the link on
 * command: cut every live connection now, or after the next N bytes in one direction; add latency;
 * cap the bandwidth. Upstream is client -> target, downstream is target -> client.
 *
 * Cutting destroys both sockets of every live pair (the client sees its connection die, sshd sees
 * its peer go); connections made after a cut are accepted and forwarded as usual, so a client that
 * reconnects gets through. The proxy is bounded (a connection cap, a cap on bytes held per
 * direction, after which the sender is paused) and self-stopping (it closes itself after
 * `lifetimeMs` even if a test forgets to). It listens on loopback only and forwards only to a
 * loopback target.
 */
import net from 'node:net';

export interface FaultProxyOptions {
  target: { host: string; port: number };
  /** Live connections accepted at once; more are closed at once. Default 32. */
  maxConnections?: number;
  /** The proxy closes itself this long after it started. Default 10 minutes. */
  lifetimeMs?: number;
}

export interface FaultProxyStats {
  /** Connections accepted since the start. */
  accepted: number;
  /** Connections live now. */
  active: number;
  /** Connections refused because maxConnections were live. */
  rejected: number;
  /** Connections whose target side could not be reached. */
  targetFailures: number;
  /** Cuts made (cutAll calls and fired byte triggers) that found at least one live connection. */
  cuts: number;
  /** Connections destroyed by cuts. */
  connectionsCut: number;
  /** Bytes forwarded client -> target, over all connections. */
  upstreamBytes: number;
  /** Bytes forwarded target -> client, over all connections. */
  downstreamBytes: number;
}

export interface FaultProxy {
  port: number;
  /** Destroys every live connection (both sides) now; returns how many there were. */
  cutAll: () => number;
  /**
   * Forwards `n` more bytes upstream (counted over all connections from now), then cuts every
   * connection live at that moment. One-shot. As on a real network, bytes still in flight when the
   * reset lands may never be read by the receiver, so `n` is an upper bound on what arrives.
   */
  cutAfterUpstreamBytes: (n: number) => void;
  /** The same, counting bytes downstream (target -> client). */
  cutAfterDownstreamBytes: (n: number) => void;
  /** Delays every chunk by this much, each direction (0 turns it off). */
  setLatency: (ms: number) => void;
  /** Caps each direction of each connection at this rate (0 turns it off). */
  setBandwidth: (bytesPerSec: number) => void;
  stats: () => FaultProxyStats;
  close: () => Promise<void>;
}

type Direction = 'up' | 'down';

/** Bytes held per direction before the sending side is paused, and when it is resumed. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const { target } = options;
  if (!isLoopback(target.host)) throw new Error(`fault proxy forwards to loopback only, not ${target.host}`);
  if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) throw new Error(`bad target port ${target.port}`);
  const maxConnections = options.maxConnections ?? 32;
  const lifetimeMs = options.lifetimeMs ?? 10 * 60_000;

  let latencyMs = 0;
  let bandwidth = 0;
  const triggers: Record<Direction, number | undefined> = { up: undefined, down: undefined };
  const stats: FaultProxyStats = {
    accepted: 0,
    active: 0,
    rejected: 0,
    targetFailures: 0,
    cuts: 0,
    connectionsCut: 0,
    upstreamBytes: 0,
    downstreamBytes: 0,
  };
  const pairs = new Set<Pair>();
  let closed = false;

  const cut = (victims: Pair[]): number => {
    const live = victims.filter((pair) => pair.alive);
    for (const pair of live) pair.destroy();
    if (live.length > 0) {
      stats.cuts += 1;
      stats.connectionsCut += live.length;
    }
    return live.length;
  };
  const cutAll = (): number => cut([...pairs]);

  /**
   * How many of `length` bytes about to go in `direction` may pass: all, unless a trigger is armed
   * and fires within them, in which case the rest of the link is cut once those bytes are out.
   */
  const admit = (direction: Direction, length: number): { pass: number; cut: boolean } => {
    const left = triggers[direction];
    if (left === undefined || length < left) {
      if (left !== undefined) triggers[direction] = left - length;
      return { pass: length, cut: false };
    }
    triggers[direction] = undefined;
    return { pass: left, cut: true };
  };

  class Pair {
    readonly client: net.Socket;
    readonly upstream: net.Socket;
    private readonly pumps: Record<Direction, Pump>;
    private dead = false;

    constructor(client: net.Socket) {
      this.client = client;
      this.upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
      this.pumps = { up: new Pump(this, 'up', client, this.upstream), down: new Pump(this, 'down', this.upstream, client) };
      client.setNoDelay(true);
      let connected = false;
      this.upstream.once('connect', () => (connected = true));
      this.upstream.on('error', () => {
        if (!connected) stats.targetFailures += 1;
        this.destroy();
      });
      client.on('error', () => this.destroy());
      // A side that closed after a clean end (FIN) leaves the other direction to drain and end;
      // a side that closed without one (reset, error) takes the whole pair down.
      const onClose = (from: Pump) => (): void => {
        if (this.client.destroyed && this.upstream.destroyed) this.forget();
        else if (!from.ended) this.destroy();
      };
      client.on('close', onClose(this.pumps.up));
      this.upstream.on('close', onClose(this.pumps.down));
    }

    get alive(): boolean {
      return !this.dead;
    }

    /** A trigger fired: nothing more passes in either direction until the cut lands. */
    freeze(): void {
      this.pumps.up.frozen = true;
      this.pumps.down.frozen = true;
    }

    /** Ends both sides at once, with a TCP reset, so neither side can mistake it for a clean close. */
    destroy(): void {
      if (this.dead) return;
      this.dead = true;
      this.pumps.up.stop();
      this.pumps.down.stop();
      reset(this.client);
      reset(this.upstream);
      this.forget();
    }

    private forget(): void {
      this.dead = true;
      if (pairs.delete(this)) stats.active -= 1;
    }
  }

  /** One direction of one pair: orders, delays and paces chunks, and keeps the held bytes bounded. */
  class Pump {
    frozen = false;
    private readonly queue: { data: Buffer; due: number }[] = [];
    private held = 0;
    private timer: NodeJS.Timeout | undefined;
    private waitingDrain = false;
    /** The sending side ended its stream cleanly. */
    ended = false;
    /** When the bandwidth cap next lets a byte out. */
    private nextFree = 0;

    constructor(
      private readonly pair: Pair,
      private readonly direction: Direction,
      private readonly from: net.Socket,
      private readonly to: net.Socket,
    ) {
      from.on('data', (data: Buffer) => this.push(data));
      from.on('end', () => {
        this.ended = true;
        this.pump();
      });
      to.on('drain', () => {
        this.waitingDrain = false;
        this.pump();
      });
    }

    stop(): void {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.queue.length = 0;
      this.held = 0;
    }

    private push(data: Buffer): void {
      if (this.frozen || !this.pair.alive) return;
      this.queue.push({ data, due: Date.now() + latencyMs });
      this.held += data.length;
      if (this.held > HIGH_WATER) this.from.pause();
      this.pump();
    }

    private pump(): void {
      if (this.timer || this.waitingDrain || !this.pair.alive) return;
      while (this.queue.length > 0) {
        if (this.frozen) {
          this.queue.length = 0;
          this.held = 0;
          return;
        }
        const head = this.queue[0]!;
        const now = Date.now();
        if (head.due > now) return this.wait(head.due - now);
        let data = head.data;
        if (bandwidth > 0) {
          if (this.nextFree > now) return this.wait(this.nextFree - now);
          // Slices of about 20 ms worth keep the pace smooth without a timer per byte.
          const slice = Math.max(1, Math.floor(bandwidth / 50));
          if (data.length > slice) data = data.subarray(0, slice);
          this.nextFree = Math.max(now, this.nextFree) + (data.length / bandwidth) * 1000;
        }
        const { pass, cut: fires } = admit(this.direction, data.length);
        if (fires) {
          // The trigger fires here: these last bytes go out, nothing else does, then every
          // connection live now is cut (not ones made later: a quick reconnect must get through).
          const victims = [...pairs];
          for (const pair of victims) pair.freeze();
          const last = data.subarray(0, pass);
          this.count(last.length);
          let fired = false;
          const fire = (): void => {
            if (fired) return;
            fired = true;
            cut(victims);
          };
          if (last.length > 0 && !this.to.destroyed) this.to.write(last, fire);
          else fire();
          // Never wait for the write for long: a peer that stopped reading must not hold the cut back.
          setTimeout(fire, 200).unref();
          this.queue.length = 0;
          this.held = 0;
          return;
        }
        if (data.length === head.data.length) this.queue.shift();
        else head.data = head.data.subarray(data.length);
        this.held -= data.length;
        this.count(data.length);
        if (this.held < LOW_WATER && this.from.isPaused()) this.from.resume();
        if (!this.to.write(data)) {
          this.waitingDrain = true;
          return;
        }
      }
      if (this.ended && !this.to.writableEnded) this.to.end();
    }

    private count(n: number): void {
      if (this.direction === 'up') stats.upstreamBytes += n;
      else stats.downstreamBytes += n;
    }

    private wait(ms: number): void {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, Math.max(1, Math.ceil(ms)));
    }
  }

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (client) => {
    if (closed || pairs.size >= maxConnections) {
      stats.rejected += 1;
      reset(client);
      return;
    }
    stats.accepted += 1;
    stats.active += 1;
    pairs.add(new Pair(client));
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    clearTimeout(lifetime);
    for (const pair of [...pairs]) pair.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  const lifetime = setTimeout(() => void close(), lifetimeMs);
  lifetime.unref();

  const checkCount = (n: number, what: string): void => {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} must be a whole number of 0 or more, got ${n}`);
  };
  return {
    port,
    cutAll,
    cutAfterUpstreamBytes: (n) => {
      checkCount(n, 'cutAfterUpstreamBytes');
      triggers.up = n;
    },
    cutAfterDownstreamBytes: (n) => {
      checkCount(n, 'cutAfterDownstreamBytes');
      triggers.down = n;
    },
    setLatency: (ms) => {
      checkCount(ms, 'latency');
      latencyMs = ms;
    },
    setBandwidth: (bytesPerSec) => {
      checkCount(bytesPerSec, 'bandwidth');
      bandwidth = bytesPerSec;
    },
    stats: () => ({ ...stats }),
    close,
  };
}

/** A TCP reset where the socket is connected (like a dropped link: no clean end for either side). */
function reset(socket: net.Socket): void {
  if (socket.destroyed) return;
  if (socket.readyState === 'opening') socket.destroy();
  else socket.resetAndDestroy();
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
