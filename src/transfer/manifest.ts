/**
 * Manifests: what a job's files are, byte for byte (issue 17, part 3). One entry per regular file,
 * `{ path, bytes, sha256 }`; the canonical text is one line per file, `HEXPATH BYTES SHA256\n`,
 * HEXPATH the path's UTF-8 bytes in lowercase hex, lines sorted (hex keeps the bytes' order), so the
 * gateway's `mgw_manifest` and this file make the same text and one SHA-256 of it (the digest)
 * names a whole tree. The client sends the digest of its inputs with the start; the gateway sends
 * the manifest of what it serves before a download, and the client checks what landed.
 *
 * Hashing runs in a worker thread, streaming (1 MiB reads, bounded memory): on the main thread it
 * would take the CPU from ssh2, which encrypts the upload it overlaps with (1 GiB is ~1 s of SHA-256
 * here, node's OpenSSL with SHA-NI).
 */
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { InputError } from '../errors.js';
import type { ManifestDifference, ManifestEntry } from '../types.js';

export type { ManifestDifference, ManifestEntry };

const hexPath = (path: string): string => Buffer.from(path, 'utf8').toString('hex');

/** The canonical text (see the module comment). */
export function formatManifest(entries: readonly ManifestEntry[]): string {
  return entries
    .map((e) => `${hexPath(e.path)} ${e.bytes} ${e.sha256}\n`)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .join('');
}

/** The SHA-256 of the canonical text: what a start sends, and what the audit records. */
export function manifestDigest(entries: readonly ManifestEntry[]): string {
  return createHash('sha256').update(formatManifest(entries)).digest('hex');
}

/** Entries sorted by path, as the canonical text orders them. */
export function sortManifest(entries: readonly ManifestEntry[]): ManifestEntry[] {
  return [...entries].sort((a, b) => {
    const x = hexPath(a.path);
    const y = hexPath(b.path);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

/** One line of the canonical text (as the gateway prints it after `mint-gw: manifest: `), or undefined. */
export function parseManifestLine(line: string): ManifestEntry | undefined {
  const m = /^((?:[0-9a-f]{2})+) (\d{1,15}) ([0-9a-f]{64})$/.exec(line);
  if (!m) return undefined;
  const path = Buffer.from(m[1]!, 'hex').toString('utf8');
  return { path, bytes: Number(m[2]), sha256: m[3]! };
}

/** What differs between `expected` and `actual`, by path; empty when they agree. */
export function compareManifests(expected: readonly ManifestEntry[], actual: readonly ManifestEntry[]): ManifestDifference[] {
  const have = new Map(actual.map((e) => [e.path, e]));
  const out: ManifestDifference[] = [];
  for (const e of expected) {
    const a = have.get(e.path);
    have.delete(e.path);
    if (!a) out.push({ path: e.path, problem: 'missing', expected: { bytes: e.bytes, sha256: e.sha256 } });
    else if (a.bytes !== e.bytes || a.sha256 !== e.sha256) out.push({ path: e.path, problem: 'changed', expected: { bytes: e.bytes, sha256: e.sha256 }, actual: { bytes: a.bytes, sha256: a.sha256 } });
  }
  for (const a of have.values()) out.push({ path: a.path, problem: 'extra', actual: { bytes: a.bytes, sha256: a.sha256 } });
  return out;
}

/** `a.dat (changed: 10 bytes sha256 ab12... here, 10 bytes cd34... expected)`, for messages. */
export function describeDifference(d: ManifestDifference, here = 'here', there = 'expected'): string {
  const fmt = (x: { bytes: number; sha256: string }): string => `${x.bytes} bytes sha256 ${x.sha256.slice(0, 12)}...`;
  if (d.problem === 'missing') return `${JSON.stringify(d.path)} (missing ${here})`;
  if (d.problem === 'extra') return `${JSON.stringify(d.path)} (not ${there})`;
  return `${JSON.stringify(d.path)} (${fmt(d.actual!)} ${here}, ${fmt(d.expected!)} ${there})`;
}

/**
 * The regular files an upload of `inputs` (absolute paths, checked by checkInputs) puts into the
 * work dir, with the names they get there: each input's basename, then the path below it. Symlinks
 * are followed, as rsync -L does; specials are skipped, as rsync skips them.
 */
export async function inputFiles(inputs: readonly string[]): Promise<{ path: string; file: string }[]> {
  const out: { path: string; file: string }[] = [];
  const walk = async (file: string, path: string): Promise<void> => {
    const info = await stat(file);
    if (info.isFile()) {
      out.push({ path, file });
      return;
    }
    if (!info.isDirectory()) return;
    for (const name of (await readdir(file)).sort()) await walk(join(file, name), `${path}/${name}`);
  };
  for (const input of inputs) await walk(input, basename(input));
  return out;
}

// The worker: hashes each file it is sent, in order, and posts `{ i, bytes, sha256 }` or `{ i, error }`.
const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const buf = Buffer.allocUnsafe(1 << 20);
parentPort.on('message', ({ i, file }) => {
  let fd;
  try {
    fd = openSync(file, 'r');
    const h = createHash('sha256');
    let bytes = 0;
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; bytes += n) h.update(buf.subarray(0, n));
    parentPort.postMessage({ i, bytes, sha256: h.digest('hex') });
  } catch (error) {
    parentPort.postMessage({ i, error: String(error && error.code || error) });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
});
`;

/**
 * Hashes `files` (local paths, each named `path` in the manifest) in one worker thread, streaming.
 * A file that cannot be read rejects with its name.
 */
export async function hashFiles(files: readonly { path: string; file: string }[], options: { skipUnreadable?: boolean } = {}): Promise<ManifestEntry[]> {
  if (files.length === 0) return [];
  const worker = new Worker(WORKER, { eval: true });
  try {
    return await new Promise<ManifestEntry[]>((resolve, reject) => {
      const out: ManifestEntry[] = new Array(files.length);
      let left = files.length;
      worker.on('error', reject);
      worker.on('message', (m: { i: number; bytes?: number; sha256?: string; error?: string }) => {
        const f = files[m.i]!;
        if (m.error !== undefined && !options.skipUnreadable) {
          reject(new InputError(`cannot read ${f.file} (${m.error})`));
          return;
        }
        if (m.error === undefined) out[m.i] = { path: f.path, bytes: m.bytes!, sha256: m.sha256! };
        if (--left === 0) resolve(out.filter(Boolean));
      });
      files.forEach((f, i) => worker.postMessage({ i, file: f.file }));
    });
  } finally {
    await worker.terminate();
  }
}

/** The manifest of what an upload of `inputs` puts into the work dir. */
export async function manifestOfInputs(inputs: readonly string[]): Promise<ManifestEntry[]> {
  return sortManifest(await hashFiles(await inputFiles(inputs)));
}
