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
  // A path the client will read under its output dir: never one that leads out of it (a hostile or
  // broken site's manifest naming ../../etc/x had it read and hashed: red-team finding).
  if (leadsOut(path)) return undefined;
  return { path, bytes: Number(m[2]), sha256: m[3]! };
}

/**
 * Whether a relative path could lead out of the directory it is joined to: absolute, with an empty,
 * `.` or `..` part, or a NUL (so not one path). Manifests and inline streams hold no other.
 */
export function leadsOut(path: string): boolean {
  return path.includes('\0') || path.startsWith('/') || path.split('/').some((p) => p === '' || p === '.' || p === '..');
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

// The worker: one message in, one out, so the main thread (ssh2's, during the upload it overlaps
// with) does no per-file work: 5,000 files hashed with a message and an async stat each on the main
// thread cost the B3 upload ~20% (bench/manifest.mjs). `inputs`: walk each input as rsync -L sends
// it (symlinks followed, specials skipped, names sorted) and hash every regular file; `files`: hash
// these. Answers `{ entries }` or `{ error }`.
const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync, statSync, readdirSync } = require('node:fs');
const { basename, join } = require('node:path');
const buf = Buffer.allocUnsafe(1 << 20);
function hash(file) {
  const fd = openSync(file, 'r');
  try {
    const h = createHash('sha256');
    let bytes = 0;
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; bytes += n) h.update(buf.subarray(0, n));
    return { bytes, sha256: h.digest('hex') };
  } finally {
    closeSync(fd);
  }
}
parentPort.on('message', (m) => {
  try {
    const entries = [];
    if (m.inputs) {
      const walk = (file, path) => {
        const info = statSync(file);
        if (info.isFile()) entries.push({ path, ...hash(file) });
        else if (info.isDirectory()) for (const name of readdirSync(file).sort()) walk(join(file, name), path + '/' + name);
      };
      for (const input of m.inputs) walk(input, basename(input));
    } else {
      for (const f of m.files) {
        try {
          entries.push({ path: f.path, ...hash(f.file) });
        } catch (error) {
          if (!m.skipUnreadable) throw Object.assign(new Error('cannot read ' + f.file + ' (' + (error.code || error) + ')'));
        }
      }
    }
    parentPort.postMessage({ entries });
  } catch (error) {
    parentPort.postMessage({ error: String(error && error.message || error) });
  }
});
`;

async function inWorker(message: { inputs: readonly string[] } | { files: readonly { path: string; file: string }[]; skipUnreadable: boolean }): Promise<ManifestEntry[]> {
  const worker = new Worker(WORKER, { eval: true });
  try {
    return await new Promise<ManifestEntry[]>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('message', (m: { entries?: ManifestEntry[]; error?: string }) => {
        if (m.error !== undefined) reject(new InputError(`cannot hash the files: ${m.error}`));
        else resolve(m.entries ?? []);
      });
      worker.postMessage(message);
    });
  } finally {
    await worker.terminate();
  }
}

/**
 * Hashes `files` (local paths, each named `path` in the manifest) in a worker thread, streaming. A
 * file that cannot be read rejects with its name, or with `skipUnreadable` is left out.
 */
export async function hashFiles(files: readonly { path: string; file: string }[], options: { skipUnreadable?: boolean } = {}): Promise<ManifestEntry[]> {
  if (files.length === 0) return [];
  return inWorker({ files, skipUnreadable: options.skipUnreadable ?? false });
}

/**
 * The manifest of what an upload of `inputs` (absolute paths, checked by checkInputs) puts into the
 * work dir: each input's basename, then the path below it; symlinks followed, as rsync -L does,
 * specials skipped, as rsync skips them. Walked and hashed in the worker.
 */
export async function manifestOfInputs(inputs: readonly string[]): Promise<ManifestEntry[]> {
  if (inputs.length === 0) return [];
  return sortManifest(await inWorker({ inputs }));
}
