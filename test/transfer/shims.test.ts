/** Both remote-shell shims (Perl, the default where perl exists; Node, the fallback) move bytes intact both ways. */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runRemote } from '../../src/index.js';
import { shimKind } from '../../src/transfer/rsync.js';
import { RshBridge } from '../../src/transfer/rsh-bridge.js';
import { connect } from '../../src/connection/connect.js';
import { resolveHost } from '../../src/config/resolve-host.js';
import { freshDir, useSandbox } from '../support/fixture.js';

describe('rsync remote-shell shims', async () => {
  const dir = await freshDir();
  // The program copies the input and appends its own bytes, so the download differs from the upload.
  await writeFile(join(dir, 'p.sh'), '#!/bin/sh\ncat in.bin > out.bin\nhead -c 3000000 /dev/urandom >> out.bin\n');
  await chmod(join(dir, 'p.sh'), 0o755);
  const sandbox = useSandbox({ program: join(dir, 'p.sh') });
  const saved = process.env.MINT_SSH_EXEC_SHIM;
  afterEach(() => {
    if (saved === undefined) delete process.env.MINT_SSH_EXEC_SHIM;
    else process.env.MINT_SSH_EXEC_SHIM = saved;
  });

  it('picks Perl where /usr/bin/perl has its socket modules (as on Debian), and honours the override', () => {
    expect(shimKind({})).toBe('perl');
    expect(shimKind({ MINT_SSH_EXEC_SHIM: 'node' })).toBe('node');
  });

  it('the bridge socket sits in a 0700 directory and drops a connection that does not pair with a waiting transfer', async () => {
    const bridges = async (): Promise<string[]> => (await readdir(tmpdir())).filter((n) => n.startsWith('mint-rsh-'));
    const before = new Set(await bridges());
    const connection = await connect(await resolveHost(sandbox().host));
    const bridge = await RshBridge.open(connection);
    try {
      const dir = join(tmpdir(), (await bridges()).find((n) => !before.has(n))!);
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
      const attempt = (line: string): Promise<string> =>
        new Promise((resolve) => {
          let got = '';
          const s = net.connect(join(dir, 'rsh.sock'), () => s.write(line));
          s.on('data', (c) => (got += c.toString('latin1')));
          s.on('error', () => undefined);
          s.on('close', () => resolve(got));
        });
      // A guessed token, a token followed by a header (a shim that connects itself), an endless line.
      expect(await attempt(`${'0'.repeat(64)}\n`)).toBe('');
      expect(await attempt(`${'a'.repeat(64)}\n{"argv":["h","rsync","--server"]}\n`)).toBe('');
      expect(await attempt('x'.repeat(4096))).toBe('');
      expect(connection.openChannels).toBe(0);
    } finally {
      await bridge.close();
      connection.close();
    }
  });

  it('a transfer asked of a bridge that has closed fails at once, as a retryable TransferError', async () => {
    const connection = await connect(await resolveHost(sandbox().host));
    try {
      const bridge = await RshBridge.open(connection);
      await bridge.close();
      await expect(bridge.session(() => ({ error: 'unused' }))).rejects.toMatchObject({ code: 'TRANSFER_FAILED', retryable: true });
    } finally {
      connection.close();
    }
  });

  it.each(['perl', 'node'] as const)('%s shim: 12 MB up and 15 MB down, byte for byte', async (kind) => {
    process.env.MINT_SSH_EXEC_SHIM = kind;
    const work = await freshDir();
    const input = randomBytes(12 * 1024 * 1024);
    await writeFile(join(work, 'in.bin'), input);
    const r = await runRemote({ host: sandbox().host, inputs: [join(work, 'in.bin')], outputDir: join(work, 'out') });
    expect(r.exitCode).toBe(0);
    const out = await readFile(join(work, 'out', 'out.bin'));
    expect(out.length).toBe(input.length + 3_000_000);
    expect(createHash('sha256').update(out.subarray(0, input.length)).digest('hex')).toBe(createHash('sha256').update(input).digest('hex'));
  });
});
