/** The fault proxy itself, against plain TCP servers on loopback (no sshd needed). */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';

/** A target that records what it receives per connection, and can echo it or send a blob. */
async function startTarget(mode: 'echo' | 'sink' | { send: Buffer }) {
  const received: Buffer[][] = [];
  const closed: boolean[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const index = received.length;
    received.push([]);
    closed.push(false);
    sockets.add(socket);
    socket.on('data', (d: Buffer) => {
      received[index]!.push(d);
      if (mode === 'echo') socket.write(d);
    });
    socket.on('end', () => socket.end());
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed[index] = true;
      sockets.delete(socket);
    });
    if (typeof mode === 'object') socket.write(mode.send);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    received: (i: number) => Buffer.concat(received[i] ?? []),
    connections: () => received.length,
    closed: (i: number) => closed[i] ?? false,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

interface Client {
  socket: net.Socket;
  data: () => Buffer;
  closed: Promise<void>;
  isClosed: () => boolean;
}

function connectClient(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    // Not half-open: a reset can read as a plain EOF on Linux, and the client must close on either.
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let isClosed = false;
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => undefined);
    const closed = new Promise<void>((r) =>
      socket.on('close', () => {
        isClosed = true;
        r();
      }),
    );
    socket.once('connect', () => resolve({ socket, data: () => Buffer.concat(chunks), closed, isClosed: () => isClosed }));
    socket.once('error', reject);
  });
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

async function setup(mode: Parameters<typeof startTarget>[0], extra: { maxConnections?: number; lifetimeMs?: number } = {}) {
  const target = await startTarget(mode);
  cleanups.push(target.close);
  const proxy: FaultProxy = await startFaultProxy({ target: { host: '127.0.0.1', port: target.port }, ...extra });
  cleanups.push(proxy.close);
  return { target, proxy };
}

describe('fault proxy', { timeout: 15_000 }, () => {
  it('forwards both directions byte for byte and counts the bytes', async () => {
    const { target, proxy } = await setup('echo');
    const client = await connectClient(proxy.port);
    const blob = randomBytes(3 * 1024 * 1024 + 17);
    client.socket.end(blob);
    await client.closed;
    expect(target.received(0).equals(blob)).toBe(true);
    expect(client.data().equals(blob)).toBe(true);
    const stats = proxy.stats();
    expect(stats.upstreamBytes).toBe(blob.length);
    expect(stats.downstreamBytes).toBe(blob.length);
    expect(stats.accepted).toBe(1);
    await until(() => proxy.stats().active === 0, 'the pair to be forgotten');
    expect(stats.cuts).toBe(0);
  });

  it('cutAfterUpstreamBytes forwards exactly N more bytes, then cuts both sides; the next connection works', async () => {
    const { target, proxy } = await setup('sink');
    const client = await connectClient(proxy.port);
    client.socket.write(Buffer.alloc(1000, 1));
    await until(() => target.received(0).length === 1000, 'the first 1000 bytes');
    proxy.cutAfterUpstreamBytes(123_456);
    const blob = randomBytes(1024 * 1024);
    client.socket.write(blob);
    await client.closed;
    await until(() => target.closed(0), 'the target side to close');
    expect(proxy.stats().upstreamBytes).toBe(1000 + 123_456);
    const got = target.received(0);
    expect(got.length).toBeGreaterThan(1000);
    expect(got.length).toBeLessThanOrEqual(1000 + 123_456);
    expect(got.subarray(1000).equals(blob.subarray(0, got.length - 1000))).toBe(true);
    expect(proxy.stats()).toMatchObject({ cuts: 1, connectionsCut: 1, active: 0 });

    // One-shot: a later connection is accepted and forwarded in full.
    const again = await connectClient(proxy.port);
    again.socket.end(blob);
    await until(() => target.received(1).length === blob.length, 'the second connection to get through');
    expect(target.received(1).equals(blob)).toBe(true);
    expect(proxy.stats().cuts).toBe(1);
  });

  it('cutAfterDownstreamBytes forwards exactly N bytes toward the client, then cuts', async () => {
    const blob = randomBytes(2 * 1024 * 1024);
    const { target, proxy } = await setup({ send: blob });
    proxy.cutAfterDownstreamBytes(777_777);
    const client = await connectClient(proxy.port);
    await until(() => client.isClosed(), `the client to close (${JSON.stringify(proxy.stats())}, got ${client.data().length})`);
    await until(() => target.closed(0), 'the target side to close');
    // The proxy forwards exactly N; the reset may overtake the last of them (as a real drop would).
    expect(proxy.stats().downstreamBytes).toBe(777_777);
    expect(client.data().length).toBeGreaterThan(0);
    expect(client.data().length).toBeLessThanOrEqual(777_777);
    expect(client.data().equals(blob.subarray(0, client.data().length))).toBe(true);
  });

  it('a trigger counts over all connections, and cuts every connection live at that moment', async () => {
    const { target, proxy } = await setup('sink');
    const a = await connectClient(proxy.port);
    const b = await connectClient(proxy.port);
    proxy.cutAfterUpstreamBytes(1500);
    a.socket.write(Buffer.alloc(1000, 1));
    await until(() => target.received(0).length === 1000, 'a to get 1000 bytes through');
    expect(a.isClosed()).toBe(false);
    b.socket.write(Buffer.alloc(1000, 2));
    await Promise.all([a.closed, b.closed]);
    expect(target.received(1).length).toBeLessThanOrEqual(500);
    expect(proxy.stats().upstreamBytes).toBe(1500);
    expect(proxy.stats().connectionsCut).toBe(2);
  });

  it('cutAll destroys every live connection (both sides) and returns the count; new connections are accepted', async () => {
    const { target, proxy } = await setup('echo');
    const a = await connectClient(proxy.port);
    const b = await connectClient(proxy.port);
    a.socket.write('ping');
    await until(() => a.data().toString() === 'ping', 'the echo');
    await until(() => target.connections() === 2, 'both connections to reach the target');
    expect(proxy.cutAll()).toBe(2);
    await Promise.all([a.closed, b.closed]);
    await until(() => target.closed(0) && target.closed(1), 'the target sides to close');
    expect(proxy.cutAll()).toBe(0);
    const c = await connectClient(proxy.port);
    c.socket.write('again');
    await until(() => c.data().toString() === 'again', 'the echo after the cut');
    expect(proxy.stats()).toMatchObject({ accepted: 3, active: 1, cuts: 1, connectionsCut: 2 });
  });

  it('setLatency delays each direction', async () => {
    const { proxy } = await setup('echo');
    const client = await connectClient(proxy.port);
    proxy.setLatency(150);
    const t = Date.now();
    client.socket.write('x');
    await until(() => client.data().length === 1, 'the echo');
    const elapsed = Date.now() - t;
    expect(elapsed).toBeGreaterThanOrEqual(2 * 150 - 10);
    expect(elapsed).toBeLessThan(3000);
    proxy.setLatency(0);
    const t2 = Date.now();
    client.socket.write('y');
    await until(() => client.data().length === 2, 'the second echo');
    expect(Date.now() - t2).toBeLessThan(150);
  });

  it('setBandwidth paces a direction and still delivers every byte in order', async () => {
    const { target, proxy } = await setup('sink');
    proxy.setBandwidth(400_000);
    const client = await connectClient(proxy.port);
    const blob = randomBytes(200_000);
    const t = Date.now();
    client.socket.write(blob);
    await until(() => target.received(0).length === blob.length, 'the whole blob', 10_000);
    const elapsed = Date.now() - t;
    // 200 kB at 400 kB/s is 500 ms; allow for the first slice going out at once.
    expect(elapsed).toBeGreaterThanOrEqual(400);
    expect(elapsed).toBeLessThan(5000);
    expect(target.received(0).equals(blob)).toBe(true);
  });

  it('closes the client when the target cannot be reached', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const deadPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: deadPort } });
    cleanups.push(proxy.close);
    const client = await connectClient(proxy.port);
    await client.closed;
    expect(proxy.stats()).toMatchObject({ targetFailures: 1, active: 0 });
  });

  it('is bounded: refuses connections beyond maxConnections, and only forwards to loopback', async () => {
    const { proxy } = await setup('echo', { maxConnections: 2 });
    const a = await connectClient(proxy.port);
    const b = await connectClient(proxy.port);
    // The third is reset at once (possibly before its connect completes).
    const c = net.connect({ host: '127.0.0.1', port: proxy.port });
    c.on('error', () => undefined);
    await new Promise((r) => c.on('close', r));
    expect(a.isClosed() || b.isClosed()).toBe(false);
    expect(proxy.stats()).toMatchObject({ accepted: 2, rejected: 1 });
    await expect(startFaultProxy({ target: { host: '10.0.0.1', port: 22 } })).rejects.toThrow(/loopback/);
    await expect(startFaultProxy({ target: { host: 'example.org', port: 22 } })).rejects.toThrow(/loopback/);
    expect(() => proxy.cutAfterUpstreamBytes(-1)).toThrow();
  });

  it('stops itself after its lifetime, and close() stops listening', async () => {
    const { proxy } = await setup('echo', { lifetimeMs: 200 });
    const client = await connectClient(proxy.port);
    await client.closed;
    await expect(connectClient(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    const other = await setup('echo');
    await other.proxy.close();
    await expect(connectClient(other.proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
