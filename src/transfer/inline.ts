/**
 * Inline streams: a small job's files in one stream of our own (the gateway's putx and takex), for
 * inputs and results small enough that rsync's fixed cost is most of their time. A 1 KiB upload
 * through rsync costs ~90 ms (a local rsync, its shim and a second exec) and a download ~50, where
 * the exec round trip that carries an inline stream is ~12 (perf-findings.md, section 3). The
 * format (mgw_verb_putx in the gateway):
 *
 *   mint-inline 1
 *   d HEXPATH                  a directory
 *   f SIZE X HEXPATH           a file of SIZE bytes, X 1 for an executable (putx)
 *   f SIZE MODE MTIME HEXPATH  a file with the mode and time the program left (takex; d: `d 0 MODE MTIME HEXPATH`)
 *   data
 *   the files' bytes, one after the other, in the order of their f lines
 *
 * What lands is what rsync would make: uploads as `rsync -rtLE` sends them (symlinks followed,
 * specials skipped, executability kept; times are not carried), downloads as `rsync -rtp
 * --chmod=ug-s` brings them. Anything else (a symlink among the results, more than INLINE_MAX
 * bytes) goes by rsync.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, lstat, mkdir, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { ManifestEntry } from '../types.js';
import { leadsOut, sortManifest } from './manifest.js';

/** The most bytes of files an inline stream carries (the gateway's MGW_INLINE_MAX). */
export const INLINE_MAX = 1024 * 1024;
/** The most entries an inline upload lists (the gateway's MGW_INLINE_ENTRIES). */
export const INLINE_ENTRIES = 1000;

const hex = (path: string): string => Buffer.from(path, 'utf8').toString('hex');

/** An upload as one inline stream, with the manifest of what it holds. */
export interface InlineUpload {
  /** The inputs it was made of (absolute paths), for rsync where the gateway has no inline verbs. */
  inputs: readonly string[];
  body: Buffer;
  /** The manifest of the files, from the very bytes in `body`. */
  entries: ManifestEntry[];
  /** The files' paths, as rsync's --out-format would name them. */
  files: string[];
  bytes: number;
}

/**
 * The inputs (absolute paths, checked by checkInputs) as one inline stream, walked as rsync -rL
 * walks them (each input under its basename, symlinks followed, specials skipped, names sorted),
 * or undefined when they are more than an inline stream holds (or a walk fails: rsync then gets to
 * say why).
 */
export function inlineUpload(inputs: readonly string[]): InlineUpload | undefined {
  const lines: string[] = ['mint-inline 1'];
  const contents: Buffer[] = [];
  const entries: ManifestEntry[] = [];
  const files: string[] = [];
  let bytes = 0;
  const walk = (file: string, path: string): boolean => {
    if (lines.length > INLINE_ENTRIES) return false;
    const info = statSync(file);
    if (info.isDirectory()) {
      lines.push(`d ${hex(path)}`);
      for (const name of readdirSync(file).sort()) if (!walk(join(file, name), `${path}/${name}`)) return false;
      return true;
    }
    if (!info.isFile()) return true;
    if (bytes + info.size > INLINE_MAX) return false;
    const content = readFileSync(file);
    bytes += content.length;
    if (bytes > INLINE_MAX) return false;
    lines.push(`f ${content.length} ${info.mode & 0o111 ? 1 : 0} ${hex(path)}`);
    contents.push(content);
    entries.push({ path, bytes: content.length, sha256: createHash('sha256').update(content).digest('hex') });
    files.push(path);
    return true;
  };
  try {
    for (const input of inputs) if (!walk(input, basename(input))) return undefined;
  } catch {
    return undefined;
  }
  if (lines.length - 1 > INLINE_ENTRIES || Buffer.byteLength(lines.join('\n')) > 8 * 1024 * 1024) return undefined;
  lines.push('data', '');
  const body = Buffer.concat([Buffer.from(lines.join('\n')), ...contents]);
  // The gateway spools at most INLINE_MAX bytes of stream, its list included.
  if (body.length > INLINE_MAX) return undefined;
  return { inputs: [...inputs], body, entries: sortManifest(entries), files, bytes };
}

interface Entry {
  kind: 'd' | 'f';
  path: string;
  size: number;
  mode: number;
  mtime: number;
}

/** Why an inline download cannot be used as it came: the caller falls back to rsync. */
export class InlineStreamError extends Error {}

/**
 * Reads takex's stream as it arrives (at most INLINE_MAX bytes of files, held in memory), then
 * lands it in a directory. Every path is checked (relative, no empty, `.` or `..` part, no NUL),
 * never written through a symlink, and every file is written under a temporary name and renamed
 * into place, as rsync does.
 */
export class InlineReceiver {
  private head = Buffer.alloc(0);
  private entries: Entry[] | undefined;
  private readonly data: Buffer[] = [];
  private received = 0;
  private expected = 0;
  private error: string | undefined;
  private settle: () => void = () => undefined;
  /**
   * Resolves once the whole stream is here (its list and every byte it announces) or it has gone
   * wrong. sshd forwards a command's stdout and stderr from two pipes, so a line on stderr after the
   * stream (takex's `sent`) may arrive before the stream's last bytes: wait for this too.
   */
  readonly whole = new Promise<void>((resolve) => (this.settle = resolve));

  feed = (chunk: Buffer): void => {
    this.take(chunk);
    if (this.error !== undefined || (this.entries !== undefined && this.received === this.expected)) this.settle();
  };

  private take(chunk: Buffer): void {
    if (this.error !== undefined) return;
    if (this.entries === undefined) {
      this.head = Buffer.concat([this.head, chunk]);
      const end = this.head.indexOf('\ndata\n');
      if (end < 0) {
        if (this.head.length > 10 * 1024 * 1024) this.error = 'the list is too long';
        return;
      }
      try {
        this.entries = parseList(this.head.subarray(0, end + 1).toString('latin1'));
      } catch (error) {
        this.error = (error as Error).message;
        return;
      }
      this.expected = this.entries.reduce((n, e) => n + (e.kind === 'f' ? e.size : 0), 0);
      if (this.expected > INLINE_MAX) this.error = `the list announces ${this.expected} bytes, more than ${INLINE_MAX}`;
      chunk = this.head.subarray(end + 6);
      this.head = Buffer.alloc(0);
    }
    this.received += chunk.length;
    if (this.received > this.expected) this.error = `more bytes than the list announces (${this.received} > ${this.expected})`;
    else this.data.push(chunk);
  }

  /** The files, written into `dir`; throws InlineStreamError when the stream was not whole and right. */
  async land(dir: string, onFile?: (path: string) => void): Promise<string[]> {
    if (this.error !== undefined) throw new InlineStreamError(this.error);
    if (this.entries === undefined) throw new InlineStreamError('the stream ended before its list did');
    if (this.received !== this.expected) throw new InlineStreamError(`${this.received} of ${this.expected} bytes arrived`);
    const data = Buffer.concat(this.data);
    const files: string[] = [];
    let at = 0;
    const dirs: Entry[] = [];
    for (const entry of this.entries) {
      const target = join(dir, entry.path);
      await makeParents(dir, entry.path);
      if (entry.kind === 'd') {
        const info = await lstat(target).catch(() => undefined);
        if (info && !info.isDirectory()) {
          // rsync replaces what stands where a directory comes; a symlink here is never followed.
          await rm(target, { force: true });
        }
        if (!info?.isDirectory()) await mkdir(target, { mode: 0o700 });
        dirs.push(entry);
        continue;
      }
      const content = data.subarray(at, at + entry.size);
      at += entry.size;
      const part = join(dir, entry.path.includes('/') ? entry.path.slice(0, entry.path.lastIndexOf('/')) : '', `.${basename(entry.path)}.${randomBytes(4).toString('hex')}.part`);
      await writeFile(part, content, { mode: 0o600, flag: 'wx' });
      await chmod(part, entry.mode & 0o1777);
      await utimes(part, entry.mtime, entry.mtime);
      const existing = await lstat(target).catch(() => undefined);
      if (existing?.isDirectory()) {
        await rm(part, { force: true });
        throw new InlineStreamError(`${JSON.stringify(entry.path)} is a directory here`);
      }
      // rename replaces a file or a symlink of that name; it never writes through one.
      await rename(part, target);
      files.push(entry.path);
      onFile?.(entry.path);
    }
    // Directory modes and times last, deepest first: a read-only directory would refuse its files.
    for (const entry of dirs.reverse()) {
      const target = join(dir, entry.path);
      await chmod(target, entry.mode & 0o1777);
      await utimes(target, entry.mtime, entry.mtime);
    }
    return files;
  }
}

/** Each parent of `path` below `dir` is a real directory (made if missing); a symlink there is refused. */
async function makeParents(dir: string, path: string): Promise<void> {
  const parts = path.split('/').slice(0, -1);
  let at = dir;
  for (const part of parts) {
    at = join(at, part);
    const info = await lstat(at).catch(() => undefined);
    if (info?.isDirectory()) continue;
    if (info) throw new InlineStreamError(`${JSON.stringify(path)} would go through ${JSON.stringify(at)}, which is not a directory here`);
    await mkdir(at, { mode: 0o700 });
  }
}

function parseList(text: string): Entry[] {
  const lines = text.split('\n');
  if (lines[0] !== 'mint-inline 1') throw new InlineStreamError('the stream does not begin with "mint-inline 1"');
  const entries: Entry[] = [];
  const seen = new Set<string>();
  for (const line of lines.slice(1, -1)) {
    const m = /^([df]) (\d{1,15}) ([0-7]{1,6}) (\d{1,15}(?:\.\d{1,10})?) ((?:[0-9a-f]{2})+)$/.exec(line);
    if (!m) throw new InlineStreamError(`a list line is not "TYPE SIZE MODE MTIME HEXPATH": ${JSON.stringify(line.slice(0, 80))}`);
    const raw = Buffer.from(m[5]!, 'hex');
    const path = raw.toString('utf8');
    if (raw.includes(0) || !Buffer.from(path, 'utf8').equals(raw)) throw new InlineStreamError('a path is not NUL-free UTF-8');
    if (leadsOut(path)) throw new InlineStreamError(`a path leads out of the results: ${JSON.stringify(path)}`);
    if (seen.has(path)) throw new InlineStreamError(`the list names ${JSON.stringify(path)} twice`);
    seen.add(path);
    entries.push({ kind: m[1] as 'd' | 'f', path, size: m[1] === 'f' ? Number(m[2]) : 0, mode: parseInt(m[3]!, 8) & ~0o6000, mtime: Number(m[4]) });
  }
  return entries;
}

/** The manifest of landed files, read back from disk (what is here, not what arrived). */
export async function hashLanded(dir: string, paths: readonly string[]): Promise<ManifestEntry[]> {
  const out: ManifestEntry[] = [];
  for (const path of paths) {
    // Only paths inside `dir`, and only regular files: never a FIFO or a device a name stands for.
    if (leadsOut(path)) continue;
    const info = await lstat(join(dir, path)).catch(() => undefined);
    if (!info?.isFile()) continue;
    const content = await readFile(join(dir, path)).catch(() => undefined);
    if (content) out.push({ path, bytes: content.length, sha256: createHash('sha256').update(content).digest('hex') });
  }
  return out;
}
