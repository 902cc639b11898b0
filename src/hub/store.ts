/**
 * The hub's durable state: SQLite (better-sqlite3 12; 13 crashes Node 20), WAL with synchronous
 * FULL, so a change the hub has answered for survives a crash of the process or the machine. File
 * contents never go into SQLite: they stream to DATA/jobs/ID/{in,out}/N and the log to
 * DATA/jobs/ID/log, each fsynced before the hub acknowledges it; the database holds their names,
 * sizes and SHA-256s. Tokens are stored as SHA-256 hashes only (a token is 256 random bits, so a
 * plain hash is as good as a slow one here), and printed once.
 */
import type Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ConfigError } from '../errors.js';
import { join } from 'node:path';
import type { FileEntry, HubJob, StartRequest } from '../pull/wire.js';
import type { JobState } from '../types.js';

export type Kind = 'in' | 'out';

export interface JobRow {
  id: string;
  site: string;
  submitter: string;
  state: JobState;
  exit_code: number | null;
  pid: number | null;
  request: string | null;
  log_bytes: number;
  inputs_ready: number;
  results_ready: number;
  cancel_requested: number;
  cancel_sent: number;
  claimed: number;
  submitted_at: number | null;
  started_at: number | null;
}

interface FileRow {
  idx: number;
  name: string;
  size: number;
  sha256: string;
  mode: number;
  mtime_ms: number;
  link: string | null;
}

export const FINAL: ReadonlySet<JobState> = new Set(['exited', 'cancelled', 'lost']);

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

export class HubStore {
  readonly dir: string;
  private readonly db: Database.Database;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(join(dir, 'jobs'), { recursive: true, mode: 0o700 });
    this.db = new (loadSqlite())(join(dir, 'hub.sqlite'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS principals (
        kind TEXT NOT NULL CHECK (kind IN ('site', 'submitter')),
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
      );
      CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        submitter TEXT NOT NULL,
        state TEXT NOT NULL,
        exit_code INTEGER,
        pid INTEGER,
        request TEXT,
        log_bytes INTEGER NOT NULL DEFAULT 0,
        inputs_ready INTEGER NOT NULL DEFAULT 0,
        results_ready INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        cancel_sent INTEGER NOT NULL DEFAULT 0,
        claimed INTEGER NOT NULL DEFAULT 0,
        submitted_at INTEGER,
        started_at INTEGER
      );
      CREATE INDEX IF NOT EXISTS jobs_site ON jobs (site, state);
      CREATE TABLE IF NOT EXISTS files (
        job TEXT NOT NULL,
        kind TEXT NOT NULL,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        mode INTEGER NOT NULL,
        mtime_ms REAL NOT NULL,
        link TEXT,
        PRIMARY KEY (job, kind, idx)
      );
    `);
  }

  close(): void {
    this.db.close();
  }

  /** A new principal, or a fresh token for one (the old token stops working); the token, to print once. */
  addPrincipal(kind: 'site' | 'submitter', name: string): string {
    const token = newToken();
    this.db
      .prepare(
        `INSERT INTO principals (kind, name, token_hash, revoked, created_at) VALUES (?, ?, ?, 0, ?)
         ON CONFLICT (kind, name) DO UPDATE SET token_hash = excluded.token_hash, revoked = 0`,
      )
      .run(kind, name, hashToken(token), Date.now());
    return token;
  }

  revoke(kind: 'site' | 'submitter', name: string): boolean {
    return this.db.prepare('UPDATE principals SET revoked = 1 WHERE kind = ? AND name = ?').run(kind, name).changes > 0;
  }

  principals(): { kind: string; name: string; revoked: number }[] {
    return this.db.prepare('SELECT kind, name, revoked FROM principals ORDER BY kind, name').all() as { kind: string; name: string; revoked: number }[];
  }

  /** Who a token is, if it is anyone's and not revoked. */
  whoIs(token: string): { kind: 'site' | 'submitter'; name: string } | undefined {
    const row = this.db.prepare('SELECT kind, name FROM principals WHERE token_hash = ? AND revoked = 0').get(hashToken(token)) as { kind: 'site' | 'submitter'; name: string } | undefined;
    return row;
  }

  siteExists(name: string): boolean {
    return this.db.prepare("SELECT 1 FROM principals WHERE kind = 'site' AND name = ? AND revoked = 0").get(name) !== undefined;
  }

  job(id: string): JobRow | undefined {
    return this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
  }

  createJob(id: string, site: string, submitter: string): void {
    this.db.prepare("INSERT INTO jobs (id, site, submitter, state) VALUES (?, ?, ?, 'created')").run(id, site, submitter);
  }

  update(id: string, fields: Partial<Omit<JobRow, 'id'>>): void {
    const keys = Object.keys(fields);
    if (keys.length === 0) return;
    this.db.prepare(`UPDATE jobs SET ${keys.map((k) => `${k} = @${k}`).join(', ')} WHERE id = @id`).run({ ...fields, id });
  }

  /** Runs `fn` as one transaction: all of it or none. */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  files(job: string, kind: Kind): (FileEntry & { idx: number })[] {
    const rows = this.db.prepare('SELECT idx, name, size, sha256, mode, mtime_ms, link FROM files WHERE job = ? AND kind = ? ORDER BY idx').all(job, kind) as FileRow[];
    return rows.map((r) => ({ idx: r.idx, name: r.name, size: r.size, sha256: r.sha256, mode: r.mode, mtimeMs: r.mtime_ms, ...(r.link !== null ? { link: r.link } : {}) }));
  }

  setFiles(job: string, kind: Kind, files: readonly FileEntry[]): void {
    this.tx(() => {
      this.db.prepare('DELETE FROM files WHERE job = ? AND kind = ?').run(job, kind);
      const insert = this.db.prepare('INSERT INTO files (job, kind, idx, name, size, sha256, mode, mtime_ms, link) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
      files.forEach((f, idx) => insert.run(job, kind, idx, f.name, f.size, f.sha256, f.mode, f.mtimeMs, f.link ?? null));
    });
  }

  listJobs(where: { site?: string; submitter?: string }): JobRow[] {
    if (where.site !== undefined && where.submitter !== undefined) return this.db.prepare('SELECT * FROM jobs WHERE site = ? AND submitter = ? ORDER BY rowid').all(where.site, where.submitter) as JobRow[];
    if (where.site !== undefined) return this.db.prepare('SELECT * FROM jobs WHERE site = ? ORDER BY rowid').all(where.site) as JobRow[];
    return this.db.prepare('SELECT * FROM jobs WHERE submitter = ? ORDER BY rowid').all(where.submitter) as JobRow[];
  }

  /**
   * What the site's agent must act on now, marked as handed over in the same transaction: queued
   * jobs nobody claimed, and cancels not yet sent. A claim survives a hub restart; an agent that
   * restarts asks for its claimed jobs again (`activeForSite`).
   */
  takeWork(site: string): { start: JobRow[]; cancel: JobRow[] } {
    return this.tx(() => {
      const start = this.db.prepare("SELECT * FROM jobs WHERE site = ? AND state = 'queued' AND claimed = 0 ORDER BY rowid").all(site) as JobRow[];
      const cancel = this.db.prepare('SELECT * FROM jobs WHERE site = ? AND claimed = 1 AND cancel_requested = 1 AND cancel_sent = 0').all(site) as JobRow[];
      for (const j of start) this.update(j.id, { claimed: 1 });
      for (const j of cancel) this.update(j.id, { cancel_sent: 1 });
      return { start, cancel };
    });
  }

  /** The site's claimed jobs whose results the hub does not hold yet. */
  activeForSite(site: string): JobRow[] {
    return this.db.prepare('SELECT * FROM jobs WHERE site = ? AND claimed = 1 AND results_ready = 0 ORDER BY rowid').all(site) as JobRow[];
  }

  deleteJob(id: string): void {
    this.tx(() => {
      this.db.prepare('DELETE FROM files WHERE job = ?').run(id);
      this.db.prepare('DELETE FROM jobs WHERE id = ?').run(id);
    });
  }
}

export function hubJob(row: JobRow): HubJob {
  return {
    jobId: row.id,
    site: row.site,
    state: row.state,
    exitCode: row.exit_code ?? undefined,
    pid: row.pid ?? undefined,
    logBytes: row.log_bytes,
    resultsReady: row.results_ready === 1,
    cancelRequested: row.cancel_requested === 1,
    submittedAt: row.submitted_at ?? undefined,
    startedAt: row.started_at ?? undefined,
  };
}

export function startRequest(row: JobRow): StartRequest {
  return row.request ? (JSON.parse(row.request) as StartRequest) : { args: [] };
}

/**
 * better-sqlite3 is an optional peer dependency, loaded only by a hub: it is a native module, and
 * where its prebuilt binary cannot be fetched (no route to GitHub, as on the machines this was built
 * on) npm compiles SQLite from source for minutes, which every MInt module installing this package
 * would pay for a hub it never runs.
 */
function loadSqlite(): typeof Database {
  try {
    return createRequire(import.meta.url)('better-sqlite3') as typeof Database;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') {
      throw new ConfigError('the hub needs the better-sqlite3 package, which is not installed', {
        hint: 'npm install better-sqlite3@12 (an optional peer dependency of mint-ssh-exec, for hub machines; 13 crashes Node 20)',
      });
    }
    throw error;
  }
}
