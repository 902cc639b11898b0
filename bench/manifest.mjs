#!/usr/bin/env node
// The cost of verified bytes (issue 17, part 3) on the bench's B2 (one 1 GiB input) and B3 (5,000
// files of 4 KiB) inputs, against the private sshd with the real gateway. Interleaved, rotated
// variants, medians:
//   upload          connect + put, as bench/run.mjs's B2/B3 rows time it (no manifest)
//   upload+hash     the same with the inputs' manifest hashed alongside, as runRemote does (worker
//                   thread), timed until both are done
//   start           startx on the uploaded job without a manifest line (the program is trivial)
//   start+check     startx with the manifest line: the gateway hashes the work dir first
//   with --baseline-gateway FILE, also a whole verified job (upload+hash, then start+check) on a
//   second sandbox whose gateway is FILE (e.g. `git show REV:src/assets/mint-gateway.sh`),
//   interleaved with the same on this build's gateway: what a gateway change costs or saves
//   (`job` and `baseline job`, and their upload halves)
// Usage: node bench/manifest.mjs [--reps N] [--only B2,B3] [--baseline-gateway FILE]  (needs a built dist/)
import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { load, openLink } from './lib/mint.mjs';

const args = process.argv.slice(2);
const reps = Number(args[args.indexOf('--reps') + 1] || 5) || 5;
const baselineGateway = args.includes('--baseline-gateway') ? args[args.indexOf('--baseline-gateway') + 1] : undefined;
const only = new Set((args.includes('--only') ? args[args.indexOf('--only') + 1] : 'B2,B3').split(','));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const log = (m) => process.stderr.write(`[manifest-bench] ${m}\n`);

const m = await load();
const { manifestOfInputs } = await import(new URL('../dist/transfer/manifest.js', import.meta.url).href);
const work = await mkdtemp(join(os.tmpdir(), 'mint-manifest-bench-'));
const program = join(work, 'p.sh');
await writeFile(program, "#!/bin/sh\nprintf 'done\\n' > result.txt\n", { mode: 0o755 });
const sandbox = await m.startSandbox({ program });
// The same sandbox again with the baseline's gateway script in place of this build's.
const baseline = baselineGateway ? await m.startSandbox({ program }) : undefined;
if (baseline) {
  await copyFile(baselineGateway, baseline.gatewayPath);
  await chmod(baseline.gatewayPath, 0o755);
}

async function inputsB2() {
  const file = join(work, 'big.bin');
  const h = await open(file, 'w');
  for (let done = 0; done < 1024 ** 3; done += 16 * 1024 ** 2) await h.write(randomBytes(16 * 1024 ** 2));
  await h.close();
  return [file];
}

async function inputsB3() {
  const dir = join(work, 'many');
  await mkdir(dir);
  const pool = randomBytes(4096 * 64);
  for (let k = 0; k < 5000; k++) {
    const off = (k * 61) % (pool.length - 4096);
    const body = Buffer.from(pool.subarray(off, off + 4096));
    body.writeUInt32BE(k, 0);
    await writeFile(join(dir, `f${String(k).padStart(5, '0')}.dat`), body);
  }
  return [dir];
}

async function upload(inputs, hash, on = sandbox) {
  const jobId = randomUUID();
  const t0 = performance.now();
  const hashing = hash ? manifestOfInputs(inputs) : Promise.resolve(undefined);
  const link = await openLink(on.host);
  try {
    await link.gateway.put(inputs, { jobId });
    const entries = await hashing;
    return { jobId, ms: performance.now() - t0, entries };
  } finally {
    await link.close();
  }
}

async function start(jobId, entries, on = sandbox) {
  const link = await openLink(on.host);
  try {
    const t0 = performance.now();
    // startx both times (an argument with a space needs it), so the only difference is the manifest line.
    await link.gateway.start(jobId, ['a b'], entries ? { inputs: entries } : {});
    return performance.now() - t0;
  } finally {
    await link.close();
  }
}

const out = {};
try {
  for (const row of ['B2', 'B3']) {
    if (!only.has(row)) continue;
    log(`${row}: making the input`);
    const inputs = row === 'B2' ? await inputsB2() : await inputsB3();
    const s = { upload: [], 'upload+hash': [], start: [], 'start+check': [], ...(baseline ? { job: [], 'baseline job': [], 'job upload': [], 'baseline job upload': [] } : {}) };
    // A whole verified job on one sandbox: upload with the client's hash, then the checked start.
    const job = async (on, name) => {
      const u = await upload(inputs, true, on);
      const st = await start(u.jobId, u.entries, on);
      s[name].push(u.ms + st);
      s[`${name} upload`].push(u.ms);
      await rm(join(on.root, u.jobId), { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    };
    // One unrecorded round: page cache, first-tree effects (bench/README.md, B3).
    for (const hash of [false, true]) {
      const u = await upload(inputs, hash);
      await rm(join(sandbox.root, u.jobId), { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    }
    for (let i = 0; i < reps; i++) {
      for (const hash of i % 2 ? [true, false] : [false, true]) {
        const u = await upload(inputs, hash);
        s[hash ? 'upload+hash' : 'upload'].push(u.ms);
        s[hash ? 'start+check' : 'start'].push(await start(u.jobId, u.entries));
        await rm(join(sandbox.root, u.jobId), { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
      }
      if (baseline) {
        for (const which of i % 2 ? ['baseline job', 'job'] : ['job', 'baseline job']) await job(which === 'job' ? sandbox : baseline, which);
      }
      log(`${row} rep ${i + 1}/${reps}: ${Object.entries(s).map(([k, v]) => `${k} ${v.at(-1).toFixed(0)} ms`).join(', ')}`);
    }
    const med = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, median(v)]));
    out[row] = {
      samples: s,
      medians: med,
      uploadOverheadPct: ((med['upload+hash'] / med.upload - 1) * 100).toFixed(1),
      checkMs: med['start+check'] - med.start,
      jobOverheadPct: (((med['upload+hash'] + med['start+check']) / (med.upload + med.start) - 1) * 100).toFixed(1),
      ...(baseline ? { jobVsBaselinePct: ((med.job / med['baseline job'] - 1) * 100).toFixed(1), uploadVsBaselinePct: ((med['job upload'] / med['baseline job upload'] - 1) * 100).toFixed(1) } : {}),
    };
    log(`${row}: ${JSON.stringify(out[row].medians)} upload +${out[row].uploadOverheadPct}%, check +${out[row].checkMs.toFixed(0)} ms, upload+start +${out[row].jobOverheadPct}%`);
    await rm(inputs[0], { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
} finally {
  await sandbox.stop();
  await baseline?.stop();
  await rm(work, { recursive: true, force: true });
}
