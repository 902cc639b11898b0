/**
 * The agent's input download resumes at the byte its spool holds and checks the SHA-256 of the
 * whole file, hashing as the bytes arrive (one pass): a held prefix that is right is kept, one that
 * is wrong is caught by the hash, dropped and fetched again. Real hub and agent processes.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRemote } from '../../src/index.js';
import { freshDir, sha256 } from '../support/fixture.js';
import { startAgent, startHub, type HubSetup, type Proc } from '../support/pull.js';

describe('pull mode: the agent resumes an input download from its spool', () => {
  let dir: string;
  let hub: HubSetup;
  let token: string;
  let input: Buffer;
  let inputFile: string;
  const agents: Proc[] = [];

  beforeAll(async () => {
    dir = await freshDir();
    hub = await startHub(dir);
    token = hub.siteToken('siteR');
    input = randomBytes(5 * 1024 * 1024 + 3);
    inputFile = join(dir, 'input.dat');
    await writeFile(inputFile, input);
  }, 60_000);

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await hub?.proc.stop();
  });

  it('keeps a right prefix and refetches after a wrong one; the job gets the exact input either way', async () => {
    const right = randomUUID();
    const wrong = randomUUID();
    const spool = join(dir, 'root-siteR.mint-agent');
    // Jobs submitted while no agent runs; their spools already hold part of the input, as after an
    // agent that died mid-download: the first 2 MiB as sent, and 2 MiB of other bytes.
    const prefix = 2 * 1024 * 1024;
    for (const [id, bytes] of [[right, input.subarray(0, prefix)], [wrong, randomBytes(prefix)]] as const) {
      await mkdir(join(spool, id, 'in'), { recursive: true, mode: 0o700 });
      await writeFile(join(spool, id, 'in', 'input.dat'), bytes, { mode: 0o600 });
    }
    const jobs = [right, wrong].map((jobId) => runRemote({ host: hub.host('siteR'), inputs: [inputFile], args: ['0'], jobId, outputDir: join(dir, `out-${jobId}`) }));
    await new Promise((r) => setTimeout(r, 1000));
    const agent = await startAgent(dir, hub, 'siteR', token);
    agents.push(agent);
    const results = await Promise.all(jobs);
    for (const [i, result] of results.entries()) {
      expect(result.exitCode).toBe(0);
      expect(await sha256(join(dir, `out-${[right, wrong][i]}`, 'output.dat'))).toBe(await sha256(inputFile));
    }
    // The wrong prefix was caught by the hash (and fetched again), the right one was not.
    expect(agent.stderr()).toContain(`input input.dat: SHA-256 differs; fetching it again`);
    expect(agent.stderr().match(/SHA-256 differs/g)?.length).toBe(1);
  }, 90_000);
});
