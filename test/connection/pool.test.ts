/**
 * Many jobs, one process: jobs share connections up to the server's MaxSessions, new handshakes are
 * made one at a time, and a lower MaxSessions is learnt from the server's "open failed" replies.
 */
import { describe, expect, it } from 'vitest';
import { runRemote, ConnectionPool } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';

describe('connection pool against a real sshd at its defaults (MaxSessions 10)', () => {
  const sandbox = useSandbox();

  it('runs 30 concurrent jobs over ceil(30/10) = 3 connections with no failure', async () => {
    const pool = new ConnectionPool();
    const out = await freshDir();
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => runRemote({ host: sandbox().host, outputDir: `${out}/${i}`, pool })),
    );
    expect(results.filter((r) => r.exitCode !== 0)).toEqual([]);
    expect(pool.handshakes).toBe(3);
  }, 120_000);

  it('one job after another reuses nothing it does not need: the connection closes when idle', async () => {
    const pool = new ConnectionPool();
    const out = await freshDir();
    await runRemote({ host: sandbox().host, outputDir: out, pool });
    await runRemote({ host: sandbox().host, outputDir: out, pool });
    expect(pool.handshakes).toBe(2);
  });
});

describe('connection pool against an sshd with MaxSessions 3', () => {
  const sandbox = useSandbox({ sshdConfig: ['MaxSessions 3'] });

  it('learns the lower limit from refused channels and still completes every job', async () => {
    const pool = new ConnectionPool();
    const out = await freshDir();
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => runRemote({ host: sandbox().host, outputDir: `${out}/${i}`, pool })),
    );
    expect(results.filter((r) => r.exitCode !== 0)).toEqual([]);
    expect(pool.handshakes).toBeGreaterThanOrEqual(2);
    expect(pool.handshakes).toBeLessThanOrEqual(4);
  }, 120_000);
});
