/**
 * Pull mode's wire (issue 18): what the hub, the agent and the submit side agree on. The hub speaks
 * HTTPS; bodies are JSON, except file contents and log bytes, which travel raw and streamed (never
 * base64, never held whole: MInt's WebAPI put every file as base64 inside one JSON body, < 2 GiB,
 * held in memory at every hop). Each file carries a SHA-256, checked by whoever receives it.
 *
 * A file's name is metadata only: the hub stores file number N of a job as `N` under its data dir,
 * so no name a client sends ever becomes a path on the hub. The agent writes names into a staging
 * dir after the same check, and the gateway's own put confines them into the job.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { InputError } from '../errors.js';
import type { JobState, Resources } from '../types.js';

export const API = '/v1';

/** One file of a job's inputs or results. */
export interface FileEntry {
  /** Relative path with `/` separators: no empty, `.` or `..` component, no NUL or line break, components of at most 255 bytes, at most 4096 bytes. */
  name: string;
  size: number;
  sha256: string;
  /** Permission bits (0o777 at most; set-id bits never travel). */
  mode: number;
  /** Modification time in ms since the epoch (rsync -t keeps it; so do we). */
  mtimeMs: number;
  /** A symlink inside the job: its target (size 0, sha256 of the empty string). */
  link?: string;
}

/** What the hub says of a job. */
export interface HubJob {
  jobId: string;
  site: string;
  /** created: inputs arriving; queued: waiting for the site's agent; then the gateway's states. */
  state: JobState;
  exitCode: number | undefined;
  pid: number | undefined;
  logBytes: number;
  /** The agent has sent every result and the hub has checked them. */
  resultsReady: boolean;
  cancelRequested: boolean;
  /** ms since the epoch. */
  submittedAt: number | undefined;
  startedAt: number | undefined;
  /** A job `lost` because the site refused it before it ran (it never ran; starting it again queues it afresh). */
  refusal?: SiteRefusal;
}

/** A job as the agent receives it. */
export interface AgentJob {
  jobId: string;
  args: string[];
  program?: string;
  env?: Record<string, string>;
  /** For a site with a batch scheduler: the gateway holds them to the site's maxima (E_LIMIT). */
  resources?: Resources;
  inputs: FileEntry[];
  cancelRequested: boolean;
  state: JobState;
  logBytes: number;
}

export interface StartRequest {
  args: string[];
  program?: string;
  env?: Record<string, string>;
  resources?: Resources;
}

/**
 * What an agent tells the hub of itself (at start, then every few minutes): its version and its
 * gateway's probe report, the same `key=value` facts an SSH probe reads (rsync, program, job root,
 * free space, CPUs, memory, load, scheduler), so `probe` of a pull host can say what an SSH probe says.
 */
export interface AgentInfo {
  /** mint-ssh-exec's version on the site. */
  version: string;
  /** The gateway's probe reply, `key=value` lines parsed (`mint-gw`, `version`, `program_ok`...). */
  fields: Record<string, string>;
}

/** The hub's answer to `GET /v1/sites/NAME` (submit token): the site and what this hub has seen of its agent. */
export interface SiteReport {
  site: string;
  /** The hub's clock (ms since the epoch), against which the times below are read. */
  now: number;
  /** Undefined: no agent of this site has called this hub since it started. */
  agent:
    | {
        lastSeenAt: number;
        /** A long-poll of the agent is open at the hub now. */
        polling: boolean;
        info?: AgentInfo;
        infoAt?: number;
      }
    | undefined;
}

/** Checks an agent's report of itself: short strings only, a bounded number of facts. */
export function checkAgentInfo(value: unknown): AgentInfo {
  const v = value as Partial<AgentInfo> | null;
  const short = (x: unknown, max: number): x is string => typeof x === 'string' && x.length <= max && !/[\0\n]/.test(x);
  if (!v || !short(v.version, 64) || typeof v.fields !== 'object' || v.fields === null || Array.isArray(v.fields)) throw new InputError('agent info: { version, fields } expected');
  const entries = Object.entries(v.fields);
  if (entries.length > 200 || !entries.every(([k, x]) => /^[A-Za-z0-9_-]{1,64}$/.test(k) && short(x, 4096))) throw new InputError('agent info: at most 200 short key=value facts');
  return { version: v.version, fields: Object.fromEntries(entries) as Record<string, string> };
}

export const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SHA256 = /^[0-9a-f]{64}$/;
export const MAX_FILES = 100_000;

/** Why a file name is refused, or undefined when it is a plain relative path. */
export function badName(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'not a string';
  if (name.length === 0 || Buffer.byteLength(name) > 4096) return 'empty or longer than 4096 bytes';
  if (/[\0\n\r]/.test(name)) return 'holds NUL or a line break';
  if (name.startsWith('/')) return 'absolute';
  if (name.split('/').some((part) => part === '' || part === '.' || part === '..')) return 'has an empty, . or .. component';
  // No file system takes a longer component (NAME_MAX): the agent's write would fail after the claim.
  if (name.split('/').some((part) => Buffer.byteLength(part) > 255)) return 'has a component longer than 255 bytes';
  return undefined;
}

/** Checks a manifest from the other side: every field typed, every name plain, no name twice. */
export function checkManifest(value: unknown): FileEntry[] {
  if (!Array.isArray(value) || value.length > MAX_FILES) throw new InputError(`a manifest is a list of at most ${MAX_FILES} files`);
  const seen = new Set<string>();
  const files = value.map((raw: unknown, i): FileEntry => {
    const f = raw as Partial<FileEntry> | null;
    const why = badName(f?.name);
    if (!f || why) throw new InputError(`file ${i}: name ${why}`);
    if (!Number.isSafeInteger(f.size) || f.size! < 0) throw new InputError(`file ${i}: bad size`);
    if (typeof f.sha256 !== 'string' || !SHA256.test(f.sha256)) throw new InputError(`file ${i}: bad sha256`);
    if (!Number.isInteger(f.mode) || f.mode! < 0 || f.mode! > 0o777) throw new InputError(`file ${i}: bad mode`);
    if (typeof f.mtimeMs !== 'number' || !Number.isFinite(f.mtimeMs)) throw new InputError(`file ${i}: bad mtime`);
    if (f.link !== undefined && (typeof f.link !== 'string' || f.link.length === 0 || f.link.length > 4096 || f.link.includes('\0') || f.size !== 0)) {
      throw new InputError(`file ${i}: bad link`);
    }
    if (seen.has(f.name!)) throw new InputError(`file ${i}: ${JSON.stringify(f.name)} twice`);
    seen.add(f.name!);
    return { name: f.name!, size: f.size!, sha256: f.sha256, mode: f.mode!, mtimeMs: f.mtimeMs, ...(f.link !== undefined ? { link: f.link } : {}) };
  });
  // a/b and a/b/c: one of them would have to be a directory and a file at once (the agent's mkdir
  // of a/b then failed on the file a/b, and the job hung claimed; hub-hostile.test.ts).
  for (const name of seen) {
    for (let cut = name.indexOf('/'); cut > 0; cut = name.indexOf('/', cut + 1)) {
      if (seen.has(name.slice(0, cut))) throw new InputError(`${JSON.stringify(name.slice(0, cut))} is a file and the directory of ${JSON.stringify(name)}`);
    }
  }
  return files;
}

export const EMPTY_SHA256 = createHash('sha256').digest('hex');

/** SHA-256 of a file's bytes, read as a stream (bounded memory, any size); of its first `length` bytes when given. */
export function hashFile(path: string, length?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    if (length === 0) {
      resolve(hash.digest('hex'));
      return;
    }
    createReadStream(path, length === undefined ? {} : { start: 0, end: length - 1 })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/**
 * The site's gateway refused a job before its program ran (its inputs over a limit at `put`, the
 * site full at `startx`): the agent reports it `lost` with this, and the submit side throws the
 * GatewayError (with its gatewayCode) that the SSH method throws for the same refusal.
 */
export interface SiteRefusal {
  verb: 'put' | 'startx';
  gatewayCode: string;
  message: string;
}

export function checkRefusal(value: unknown): SiteRefusal | undefined {
  const r = value as Partial<SiteRefusal> | null | undefined;
  if (!r || (r.verb !== 'put' && r.verb !== 'startx') || typeof r.gatewayCode !== 'string' || !/^E_[A-Z]{1,32}$/.test(r.gatewayCode)) return undefined;
  if (typeof r.message !== 'string') return undefined;
  return { verb: r.verb, gatewayCode: r.gatewayCode, message: r.message.replace(/[\0-\x1f\x7f]+/g, ' ').slice(0, 2000) };
}
