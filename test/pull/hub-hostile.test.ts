/**
 * Hostile clients against the hub's API (issue 18): a real hub process over HTTPS (its own CA from
 * `hub init`, SQLite on disk), spoken to byte by byte with node:https, never through our client.
 * Each attack must get a typed HTTP error ({"error":{"code":...}}) and leave nothing behind: the
 * job's row as it was (asked back through the API) and no byte of the attack on the hub's disk.
 */
import { randomBytes, randomUUID, createHash } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDir } from '../support/fixture.js';
import { cli, startHub, type HubSetup } from '../support/pull.js';

interface Answer {
  status: number;
  body: Buffer;
  json: { error?: { code?: string; message?: string }; [k: string]: unknown };
  headers: Record<string, string | string[] | undefined>;
}

let hub: HubSetup;
let ca: string;
let submit: string;
const tokens: Record<string, string> = {};

/** One request on its own connection; `body` a Buffer (raw), an object (JSON) or chunks sent with pauses. */
function call(token: string | undefined, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const h: Record<string, string> = { ...headers };
    if (token !== undefined) h.authorization = `Bearer ${token}`;
    let payload: Buffer | undefined;
    let chunks: { data: Buffer; pauseMs: number }[] | undefined;
    if (Buffer.isBuffer(body)) payload = body;
    else if (Array.isArray(body)) chunks = body as { data: Buffer; pauseMs: number }[];
    else if (body !== undefined) {
      payload = Buffer.from(JSON.stringify(body));
      h['content-type'] = 'application/json';
    }
    if (payload) h['content-length'] = String(payload.length);
    const req = https.request(`${hub.url}${path}`, { method, headers: h, ca, agent: false }, (res) => {
      const got: Buffer[] = [];
      res.on('data', (c: Buffer) => got.push(c));
      res.on('end', () => {
        const text = Buffer.concat(got);
        let json: Answer['json'] = {};
        try {
          json = JSON.parse(text.toString('utf8')) as Answer['json'];
        } catch {
          // a raw body (file bytes, log bytes)
        }
        resolve({ status: res.statusCode!, body: text, json, headers: res.headers });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (chunks) {
      void (async () => {
        for (const c of chunks!) {
          req.write(c.data);
          await new Promise((r) => setTimeout(r, c.pauseMs));
        }
        req.end();
      })();
    } else req.end(payload);
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const entry = (name: string, data: Buffer): Record<string, unknown> => ({ name, size: data.length, sha256: sha(data), mode: 0o644, mtimeMs: 1_700_000_000_000 });

/** A job of `site` with `data` as its one input, queued (and claimed by the site's agent when `claim`). */
async function queuedJob(site: string, data: Buffer, claim: boolean): Promise<string> {
  const id = randomUUID();
  expect((await call(submit, 'POST', `/v1/jobs/${id}`, { site })).status).toBe(200);
  expect((await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, { files: [entry('input.dat', data)] })).status).toBe(200);
  expect((await call(submit, 'PUT', `/v1/jobs/${id}/inputs/0?offset=0`, data)).status).toBe(200);
  expect((await call(submit, 'POST', `/v1/jobs/${id}/start`, { args: ['0'] })).json).toMatchObject({ state: 'queued' });
  if (claim) {
    const next = await call(tokens[site], 'GET', '/v1/agent/next?wait=0');
    expect((next.json.jobs as { jobId: string }[]).map((j) => j.jobId)).toContain(id);
  }
  return id;
}

/** Every file under the job's dir on the hub, with its size: the disk's side of "nothing written". */
async function onDisk(id: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(dir, e.name), `${rel}${e.name}/`);
      else out[`${rel}${e.name}`] = (await stat(join(dir, e.name))).size;
    }
  };
  await walk(join(hub.data, 'jobs', id), '');
  return out;
}

function expectRefused(a: Answer, status: number, code: string): void {
  expect({ status: a.status, code: a.json.error?.code }, a.body.toString('utf8').slice(0, 300)).toEqual({ status, code });
}

describe('the hub against hostile clients', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await freshDir();
    hub = await startHub(dir);
    ca = readFileSync(hub.ca, 'utf8');
    submit = readFileSync(hub.submitTokenFile, 'utf8').trim();
    for (const site of ['siteA', 'siteB', 'siteC']) tokens[site] = readFileSync(hub.siteToken(site), 'utf8').trim();
  }, 60_000);

  afterAll(async () => {
    if (process.env.HUB_STDERR) console.log(hub?.proc.stderr());
    await hub?.proc.stop();
  });

  it("another site's job id reads as no such job, for every agent endpoint, and nothing of it changes", async () => {
    const data = randomBytes(4096);
    const id = await queuedJob('siteA', data, true);
    const before = await onDisk(id);
    const B = tokens.siteB;
    const attacks: [string, string, unknown?][] = [
      ['GET', `/v1/agent/jobs/${id}`],
      ['GET', `/v1/agent/jobs/${id}/inputs/0`],
      ['POST', `/v1/agent/jobs/${id}/state`, { state: 'exited', exitCode: 0 }],
      ['POST', `/v1/agent/jobs/${id}/log?offset=0`, Buffer.from('forged log\n')],
      ['PUT', `/v1/agent/jobs/${id}/results`, { files: [entry('forged.txt', Buffer.from('x'))] }],
      ['PUT', `/v1/agent/jobs/${id}/results/0?offset=0`, Buffer.from('x')],
      ['GET', `/v1/agent/jobs/${id}/results`],
      ['POST', `/v1/agent/jobs/${id}/results/commit`],
    ];
    for (const [method, path, body] of attacks) expectRefused(await call(B, method, path, body), 404, 'E_NOJOB');
    // Exactly what a job id that exists nowhere gets.
    expectRefused(await call(B, 'GET', `/v1/agent/jobs/${randomUUID()}`), 404, 'E_NOJOB');
    expect((await call(B, 'GET', '/v1/agent/jobs')).json.jobs).toEqual([]);
    // Another site's queued job is never handed to B.
    const other = await queuedJob('siteA', data, false);
    expect((await call(B, 'GET', '/v1/agent/next?wait=0')).json.jobs).toEqual([]);
    expectRefused(await call(B, 'GET', `/v1/agent/jobs/${other}`), 404, 'E_NOJOB');
    // Unchanged: the row (as the submit side sees it) and the disk.
    expect((await call(submit, 'GET', `/v1/jobs/${id}`)).json).toMatchObject({ state: 'queued', logBytes: 0, resultsReady: false, cancelRequested: false });
    expect((await call(submit, 'GET', `/v1/jobs/${id}`)).json.exitCode).toBeUndefined();
    expect(await onDisk(id)).toEqual(before);
    // The real owner still reads its job whole.
    const own = await call(tokens.siteA, 'GET', `/v1/agent/jobs/${id}/inputs/0`);
    expect(own.status).toBe(200);
    expect(sha(own.body)).toBe(sha(data));
  });

  it('a submit token is never a site token, and a site token never submits', async () => {
    const id = await queuedJob('siteA', randomBytes(16), true);
    for (const [method, path, body] of [
      ['GET', '/v1/agent/next?wait=0'],
      ['GET', '/v1/agent/jobs'],
      ['POST', `/v1/agent/jobs/${id}/state`, { state: 'exited', exitCode: 0 }],
      ['POST', `/v1/agent/jobs/${id}/log?offset=0`, Buffer.from('forged\n')],
    ] as [string, string, unknown?][]) {
      expectRefused(await call(submit, method, path, body), 403, 'E_AUTH');
    }
    const fresh = randomUUID();
    for (const [method, path, body] of [
      ['GET', '/v1/jobs'],
      ['POST', `/v1/jobs/${fresh}`, { site: 'siteA' }],
      ['GET', `/v1/jobs/${id}`],
      ['POST', `/v1/jobs/${id}/cancel`],
      ['DELETE', `/v1/jobs/${id}`],
      ['GET', `/v1/jobs/${id}/log?offset=0`],
    ] as [string, string, unknown?][]) {
      expectRefused(await call(tokens.siteA, method, path, body), 403, 'E_AUTH');
    }
    expectRefused(await call(submit, 'GET', `/v1/jobs/${fresh}`), 404, 'E_NOJOB');
    expect((await call(submit, 'GET', `/v1/jobs/${id}`)).json).toMatchObject({ state: 'queued', cancelRequested: false, logBytes: 0 });
  });

  it('a revoked token, a replaced one, a malformed one and none at all are refused (401); a revoked site takes no jobs', async () => {
    const id = await queuedJob('siteC', randomBytes(16), true);
    const before = await onDisk(id);
    const old = tokens.siteC;
    cli(['hub', 'revoke-site', 'siteC', '--data', hub.data]);
    expectRefused(await call(old, 'GET', '/v1/agent/next?wait=0'), 401, 'E_AUTH');
    expectRefused(await call(old, 'POST', `/v1/agent/jobs/${id}/log?offset=0`, Buffer.from('after revoke\n')), 401, 'E_AUTH');
    expectRefused(await call(old, 'POST', `/v1/agent/jobs/${id}/state`, { state: 'exited', exitCode: 0 }), 401, 'E_AUTH');
    expect(await onDisk(id)).toEqual(before);
    expectRefused(await call(submit, 'POST', `/v1/jobs/${randomUUID()}`, { site: 'siteC' }), 404, 'E_NOSITE');
    // A new token for the site: the old one stays dead.
    const renewed = readFileSync(hub.siteToken('siteC'), 'utf8').trim();
    expectRefused(await call(old, 'GET', '/v1/agent/jobs'), 401, 'E_AUTH');
    expect((await call(renewed, 'GET', '/v1/agent/jobs')).status).toBe(200);
    for (const auth of [undefined, '', 'x', `${old}x`, old.slice(0, 20), 'A'.repeat(300), `${old};x`]) {
      const a = await call(undefined, 'GET', '/v1/agent/jobs', undefined, auth === undefined ? {} : { authorization: `Bearer ${auth}` });
      expectRefused(a, 401, 'E_AUTH');
    }
    expectRefused(await call(undefined, 'GET', '/v1/agent/jobs', undefined, { authorization: `Basic ${Buffer.from(`siteC:${renewed}`).toString('base64')}` }), 401, 'E_AUTH');
  });

  it('replayed and reordered input chunks: the hub holds each byte once, in order; concurrent replays too', async () => {
    const MiB = 1024 * 1024;
    const data = randomBytes(3 * MiB);
    const id = randomUUID();
    await call(submit, 'POST', `/v1/jobs/${id}`, { site: 'siteA' });
    expect((await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, { files: [entry('big.dat', data)] })).json).toEqual({ sizes: [0] });
    const put = (offset: number, bytes: Buffer | { data: Buffer; pauseMs: number }[]): Promise<Answer> => call(submit, 'PUT', `/v1/jobs/${id}/inputs/0?offset=${offset}`, bytes);
    expect((await put(0, data.subarray(0, MiB))).json).toEqual({ size: MiB });
    // The same chunk again (a replay): refused, with where the hub stands.
    const replay = await put(0, data.subarray(0, MiB));
    expectRefused(replay, 409, 'E_OFFSET');
    expect(replay.json.error).toMatchObject({ size: MiB });
    // A later chunk before the one in between (reordered), and one past the end.
    expectRefused(await put(2 * MiB, data.subarray(2 * MiB)), 409, 'E_OFFSET');
    expectRefused(await put(5 * MiB, Buffer.from('x')), 409, 'E_OFFSET');
    expectRefused(await put(-1, Buffer.from('x')), 409, 'E_OFFSET');
    expectRefused(await put(Number.NaN, Buffer.from('x')), 409, 'E_OFFSET');
    expect((await call(submit, 'GET', `/v1/jobs/${id}/inputs`)).json).toEqual({ sizes: [MiB] });
    // The same chunk twice at once (a replay racing the original): the newer cuts the older off
    // (what it wrote whole stays); never both, so the file holds each byte once and in order.
    const second = data.subarray(MiB, 2 * MiB);
    const slow = [
      { data: second.subarray(0, MiB / 2), pauseMs: 400 },
      { data: second.subarray(MiB / 2), pauseMs: 0 },
    ];
    const raced = await Promise.allSettled([put(MiB, slow), new Promise((r) => setTimeout(r, 100)).then(() => put(MiB, slow))]);
    expect(raced.filter((r) => r.status === 'fulfilled' && r.value.status === 200).length).toBeLessThanOrEqual(1);
    const [held] = (await call(submit, 'GET', `/v1/jobs/${id}/inputs`)).json.sizes as number[];
    expect(held).toBeGreaterThanOrEqual(MiB);
    expect(held).toBeLessThanOrEqual(2 * MiB);
    expect(sha(await readFile(join(hub.data, 'jobs', id, 'in', '0')))).toBe(sha(data.subarray(0, held)));
    expect((await put(held!, data.subarray(held))).json).toEqual({ size: 3 * MiB });
    expect((await call(submit, 'POST', `/v1/jobs/${id}/start`, { args: [] })).json).toMatchObject({ state: 'queued' });
    expect(sha(await readFile(join(hub.data, 'jobs', id, 'in', '0')))).toBe(sha(data));
    // Sealed once queued: no chunk or manifest is taken any more.
    expectRefused(await put(3 * MiB, Buffer.from('x')), 409, 'E_STATE');
    expectRefused(await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, { files: [] }), 409, 'E_STATE');
  });

  it('chunks of other bytes than the manifest says are dropped at the start, and the start refused', async () => {
    const data = randomBytes(64 * 1024);
    const forged = Buffer.from(data);
    forged[1000] ^= 0xff;
    const id = randomUUID();
    await call(submit, 'POST', `/v1/jobs/${id}`, { site: 'siteA' });
    await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, { files: [entry('x.dat', data)] });
    expect((await call(submit, 'PUT', `/v1/jobs/${id}/inputs/0?offset=0`, forged)).status).toBe(200);
    expectRefused(await call(submit, 'POST', `/v1/jobs/${id}/start`, { args: [] }), 409, 'E_CHECKSUM');
    expect((await call(submit, 'GET', `/v1/jobs/${id}`)).json).toMatchObject({ state: 'created' });
    expect((await call(submit, 'GET', `/v1/jobs/${id}/inputs`)).json).toEqual({ sizes: [0] });
    expect((await call(submit, 'PUT', `/v1/jobs/${id}/inputs/0?offset=0`, data)).status).toBe(200);
    expect((await call(submit, 'POST', `/v1/jobs/${id}/start`, { args: [] })).json).toMatchObject({ state: 'queued' });
  });

  it('replayed and reordered log chunks: each byte once, in order; results sealed once committed', async () => {
    const id = await queuedJob('siteA', randomBytes(16), true);
    const A = tokens.siteA;
    const log = (offset: number, text: string): Promise<Answer> => call(A, 'POST', `/v1/agent/jobs/${id}/log?offset=${offset}`, Buffer.from(text));
    expect((await log(0, 'line 1\n')).json).toEqual({ logBytes: 7 });
    expect((await log(0, 'line 1\n')).json).toEqual({ logBytes: 7 }); // a resend after a lost answer
    expectRefused(await log(14, 'line 3\n'), 409, 'E_OFFSET'); // ahead of what the hub holds
    expect((await log(3, 'e 1\nline 2\n')).json).toEqual({ logBytes: 14 }); // overlapping: only the new bytes
    expectRefused(await log(-1, 'x'), 409, 'E_OFFSET');
    // Two posts of the same chunk at once.
    const [p, q] = await Promise.all([log(14, 'line 3\n'), log(14, 'line 3\n')]);
    expect([p.status, q.status].filter((s) => s === 200).length).toBeGreaterThan(0);
    const read = await call(submit, 'GET', `/v1/jobs/${id}/log?offset=0`);
    expect(read.body.toString('utf8')).toBe('line 1\nline 2\nline 3\n');
    expect(await onDisk(id)).toMatchObject({ log: 21 });
    // Results: a manifest, its bytes, the commit; a replay after the commit is refused, nothing changes.
    const out = Buffer.from('result\n');
    expect((await call(A, 'PUT', `/v1/agent/jobs/${id}/results`, { files: [entry('r.txt', out)] })).status).toBe(200);
    expectRefused(await call(A, 'PUT', `/v1/agent/jobs/${id}/results/0?offset=3`, out.subarray(3)), 409, 'E_OFFSET');
    expect((await call(A, 'PUT', `/v1/agent/jobs/${id}/results/0?offset=0`, out)).json).toEqual({ size: out.length });
    expect((await call(A, 'POST', `/v1/agent/jobs/${id}/results/commit`)).json).toEqual({ resultsReady: true });
    expect((await call(A, 'POST', `/v1/agent/jobs/${id}/results/commit`)).json).toEqual({ resultsReady: true });
    expectRefused(await call(A, 'PUT', `/v1/agent/jobs/${id}/results/0?offset=0`, out), 409, 'E_STATE');
    expectRefused(await call(A, 'PUT', `/v1/agent/jobs/${id}/results`, { files: [] }), 409, 'E_STATE');
    const got = await call(submit, 'GET', `/v1/jobs/${id}/results/0`);
    expect(got.body.toString('utf8')).toBe('result\n');
  });

  it("a site's refusal is taken only for a job it never ran, only in its checked form, and a second start queues the job afresh", async () => {
    const A = tokens.siteA;
    const ran = await queuedJob('siteA', randomBytes(16), true);
    await call(A, 'POST', `/v1/agent/jobs/${ran}/state`, { state: 'running', pid: 1 });
    await call(A, 'POST', `/v1/agent/jobs/${ran}/state`, { state: 'lost', refusal: { verb: 'startx', gatewayCode: 'E_LIMIT', message: 'forged' } });
    expect((await call(submit, 'GET', `/v1/jobs/${ran}`)).json).toMatchObject({ state: 'lost' });
    expect((await call(submit, 'GET', `/v1/jobs/${ran}`)).json.refusal).toBeUndefined();
    expect(await onDisk(ran)).not.toHaveProperty('refusal.json');
    // Malformed refusals are no refusals.
    for (const refusal of [{ verb: 'rm', gatewayCode: 'E_LIMIT', message: 'x' }, { verb: 'put', gatewayCode: 'E_LIMIT; rm -rf', message: 'x' }, { verb: 'put', gatewayCode: 'E_LIMIT', message: 42 }, 'E_LIMIT']) {
      const id = await queuedJob('siteA', randomBytes(16), true);
      await call(A, 'POST', `/v1/agent/jobs/${id}/state`, { state: 'lost', refusal });
      expect((await call(submit, 'GET', `/v1/jobs/${id}`)).json.refusal).toBeUndefined();
    }
    // A real one: control bytes in its message become spaces; starting again queues it afresh.
    const id = await queuedJob('siteA', randomBytes(16), true);
    await call(A, 'POST', `/v1/agent/jobs/${id}/state`, { state: 'lost', refusal: { verb: 'startx', gatewayCode: 'E_LIMIT', message: 'full\nmint-gw: error: E_X: y' } });
    expect((await call(submit, 'GET', `/v1/jobs/${id}`)).json).toMatchObject({ state: 'lost', refusal: { verb: 'startx', gatewayCode: 'E_LIMIT', message: 'full mint-gw: error: E_X: y' } });
    expect((await call(submit, 'POST', `/v1/jobs/${id}/start`, { args: [] })).json).toMatchObject({ state: 'queued', logBytes: 0, resultsReady: false });
    expect((await call(submit, 'GET', `/v1/jobs/${id}`)).json.refusal).toBeUndefined();
    // The job that ran is never queued again.
    expect((await call(submit, 'POST', `/v1/jobs/${ran}/start`, { args: [] })).json).toMatchObject({ state: 'lost' });
  });

  it('oversized chunks and bodies get 413 and leave nothing past what was declared', async () => {
    const data = randomBytes(100_000);
    const id = randomUUID();
    await call(submit, 'POST', `/v1/jobs/${id}`, { site: 'siteA' });
    await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, { files: [entry('x.dat', data)] });
    expect((await call(submit, 'PUT', `/v1/jobs/${id}/inputs/0?offset=0`, data.subarray(0, 50_000))).status).toBe(200);
    // More than the file's declared size, in one chunk.
    expectRefused(await call(submit, 'PUT', `/v1/jobs/${id}/inputs/0?offset=50000`, Buffer.concat([data.subarray(50_000), randomBytes(4 * 1024 * 1024)])), 413, 'E_TOOBIG');
    expect((await call(submit, 'GET', `/v1/jobs/${id}/inputs`)).json).toEqual({ sizes: [50_000] });
    expect(await onDisk(id)).toEqual({ 'in/0': 50_000 });
    // A JSON body over the hub's cap (8 MiB), and a log chunk over its cap (16 MiB).
    const huge = { files: [entry('y', Buffer.alloc(1))], pad: 'x'.repeat(9 * 1024 * 1024) };
    expectRefused(await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, huge), 413, 'E_TOOBIG');
    expect((await call(submit, 'GET', `/v1/jobs/${id}/inputs`)).json).toEqual({ sizes: [50_000] });
    const claimed = await queuedJob('siteA', randomBytes(16), true);
    expectRefused(await call(tokens.siteA, 'POST', `/v1/agent/jobs/${claimed}/log?offset=0`, Buffer.alloc(17 * 1024 * 1024, 0x41)), 413, 'E_TOOBIG');
    expect((await call(submit, 'GET', `/v1/jobs/${claimed}`)).json).toMatchObject({ logBytes: 0 });
    expect(Object.keys(await onDisk(claimed))).toEqual(['in/0']);
    // Declared sizes the hub will never hold are refused with the manifest.
    expectRefused(await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, { files: [{ ...entry('z', Buffer.alloc(1)), size: 2 ** 60 }] }), 400, 'E_USAGE');
    expectRefused(await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, { files: Array.from({ length: 100_001 }, (_, i) => ({ ...entry(`f${i}`, Buffer.alloc(0)) })) }), 413, 'E_TOOBIG');
  });

  it('path traversal and odd bytes in file names are refused whole (400), for inputs and results; odd but plain names pass byte for byte', async () => {
    const id = randomUUID();
    await call(submit, 'POST', `/v1/jobs/${id}`, { site: 'siteA' });
    const good = entry('ok.dat', Buffer.from('ok'));
    const bad = ['../escape', 'a/../../escape', '..', '.', '/etc/passwd', '//x', 'a//b', 'a/', 'a/./b', 'a\u0000b', 'a\nb', 'a\rb', '', 'x'.repeat(4097), `${'d/'.repeat(2100)}x`, `d/${'n'.repeat(256)}`, 42, null];
    for (const name of bad) {
      const a = await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, { files: [good, { ...good, name }] });
      expect({ name, status: a.status, code: a.json.error?.code }).toEqual({ name, status: 400, code: 'E_USAGE' });
    }
    // Two names where one would have to be a file and a directory at once.
    for (const pair of [['a', 'a/b'], ['a/b/c', 'a/b']]) {
      expectRefused(await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, { files: pair.map((n) => ({ ...good, name: n })) }), 400, 'E_USAGE');
    }
    // Nothing of any of them was taken.
    expect((await call(submit, 'GET', `/v1/jobs/${id}/inputs`)).json).toEqual({ sizes: [] });
    expect(await onDisk(id)).toEqual({});
    // File numbers and job ids in the URL are never paths.
    for (const path of [`/v1/jobs/${id}/inputs/..%2f..%2fhub.sqlite?offset=0`, `/v1/jobs/${id}/inputs/-1?offset=0`, `/v1/jobs/${id}/inputs/0x0?offset=0`, '/v1/jobs/..%2f..%2fhub.sqlite', `/v1/jobs/${id.toUpperCase()}`, `/v1/jobs/${id}%00`]) {
      const a = await call(submit, 'PUT', path, Buffer.from('x'));
      expect(a.status, path).toBeGreaterThanOrEqual(400);
      expect(a.status, path).toBeLessThan(500);
    }
    // Plain names with odd bytes (space, tab, quotes, $, *, leading dash, backslash, non-ASCII) are names, not paths or code.
    const odd = ['-rf', 'a b', 'tab\there', "q'\"`$(id)*?[x]", 'back\\slash', '応力/データ.dat', 'é\u200bz', `${'n'.repeat(255)}`];
    const files = odd.map((name) => entry(name, Buffer.from(name)));
    expect((await call(submit, 'PUT', `/v1/jobs/${id}/inputs`, { files })).status).toBe(200);
    for (const [i, name] of odd.entries()) expect((await call(submit, 'PUT', `/v1/jobs/${id}/inputs/${i}?offset=0`, Buffer.from(name))).status).toBe(200);
    expect((await call(submit, 'POST', `/v1/jobs/${id}/start`, { args: [] })).status).toBe(200);
    expect(Object.keys(await onDisk(id)).sort()).toEqual(odd.map((_, i) => `in/${i}`).sort());
    const next = await call(tokens.siteA, 'GET', '/v1/agent/next?wait=0');
    const job = (next.json.jobs as { jobId: string; inputs: { name: string }[] }[]).find((j) => j.jobId === id)!;
    expect(job.inputs.map((f) => f.name)).toEqual(odd);
    // The site's results are held to the same rules.
    for (const name of ['../x', '/abs', 'a\u0000b', 'a\nb']) {
      expectRefused(await call(tokens.siteA, 'PUT', `/v1/agent/jobs/${id}/results`, { files: [{ ...good, name }] }), 400, 'E_USAGE');
    }
    expect((await call(tokens.siteA, 'GET', `/v1/agent/jobs/${id}/results`)).json).toEqual({ sizes: [] });
  });

  it('slow clients holding connections (slowloris, a silent TLS handshake) neither stop the hub serving others nor stay for ever', async () => {
    const port = hub.port;
    const sockets: { socket: net.Socket; closedAt?: number }[] = [];
    const opened = Date.now();
    // 60 TLS connections that send a request's headers a few bytes at a time, never finishing them.
    for (let i = 0; i < 60; i += 1) {
      const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
      const held = { socket } as { socket: net.Socket; closedAt?: number };
      socket.on('error', () => undefined);
      socket.on('close', () => (held.closedAt = Date.now()));
      socket.once('secureConnect', () => socket.write(`GET /v1/agent/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tokens.siteA}\r\n`));
      sockets.push(held);
    }
    // 20 plain TCP connections that never start TLS at all.
    for (let i = 0; i < 20; i += 1) {
      const socket = net.connect({ host: '127.0.0.1', port });
      const held = { socket } as { socket: net.Socket; closedAt?: number };
      socket.on('error', () => undefined);
      socket.on('close', () => (held.closedAt = Date.now()));
      sockets.push(held);
    }
    const drip = setInterval(() => {
      for (const s of sockets.slice(0, 60)) if (!s.closedAt && !s.socket.destroyed) s.socket.write('X-Slow: a\r\n');
    }, 1000);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      // Others are served, and quickly, while all of them hang on.
      for (let i = 0; i < 5; i += 1) {
        const t = Date.now();
        const a = await call(tokens.siteA, 'GET', '/v1/agent/jobs');
        expect(a.status).toBe(200);
        expect(Date.now() - t).toBeLessThan(2000);
      }
      // And the hub lets them go: headers not complete within its headers timeout, TLS not begun within its handshake timeout.
      const deadline = Date.now() + 30_000;
      while (sockets.some((s) => !s.closedAt) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      const open = sockets.filter((s) => !s.closedAt).length;
      expect(open, 'connections the hub still holds 30 s after their start').toBe(0);
      const longest = Math.max(...sockets.map((s) => s.closedAt! - opened));
      console.log(`slow clients: 80 connections dropped by the hub after at most ${longest} ms`);
    } finally {
      clearInterval(drip);
      for (const s of sockets) s.socket.destroy();
    }
    expect((await call(tokens.siteA, 'GET', '/v1/agent/jobs')).status).toBe(200);
  }, 60_000);
});
