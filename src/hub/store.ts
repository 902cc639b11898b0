/**
 * The hub's durable state, behind one async interface (`HubStore`) with two backends: SQLite
 * (the default, below: better-sqlite3 12; 13 crashes Node 20), WAL with synchronous FULL, so a
 * change the hub has answered for survives a crash of the process or the machine; and PostgreSQL
 * (store-postgres.ts), for several hub replicas behind one name. File contents never go into
 * the database: they stream to DATA/jobs/ID/{in,out}/N and the log to
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

/**
 * What the hub keeps. Every method is one transaction (all of it or none), committed durably before
 * its promise resolves, so an answer the hub gives is never lost to a restart.
 */
export interface HubStore {
  /** 'sqlite' or 'postgres', and where (a PostgreSQL URL with its password hidden). */
  readonly describe: string;
  /**
   * How often a long-poll re-reads the store even without an event (ms), or undefined when every
   * change comes through this process (SQLite: one hub per database).
   */
  readonly recheckMs: number | undefined;
  close(): Promise<void>;
  /** A new principal, or a fresh token for one (the old token stops working); the token, to print once. */
  addPrincipal(kind: 'site' | 'submitter', name: string): Promise<string>;
  revoke(kind: 'site' | 'submitter', name: string): Promise<boolean>;
  principals(): Promise<{ kind: string; name: string; revoked: number }[]>;
  /** Who a token is, if it is anyone's and not revoked. */
  whoIs(token: string): Promise<{ kind: 'site' | 'submitter'; name: string } | undefined>;
  siteExists(name: string): Promise<boolean>;
  job(id: string): Promise<JobRow | undefined>;
  /** Creates the job unless a job of that id exists (a retried create, or a race between replicas). */
  createJob(id: string, site: string, submitter: string): Promise<void>;
  update(id: string, fields: Partial<Omit<JobRow, 'id'>>): Promise<void>;
  files(job: string, kind: Kind): Promise<(FileEntry & { idx: number })[]>;
  setFiles(job: string, kind: Kind, files: readonly FileEntry[]): Promise<void>;
  listJobs(where: { site?: string; submitter?: string }): Promise<JobRow[]>;
  /**
   * What the site's agent must act on now, marked as handed over in the same transaction: queued
   * jobs nobody claimed, and cancels not yet sent; each handed over once, whichever replica asks.
   * A claim survives a hub restart; an agent that restarts asks for its claimed jobs again
   * (`activeForSite`).
   */
  takeWork(site: string): Promise<{ start: JobRow[]; cancel: JobRow[] }>;
  /** The site's claimed jobs whose results the hub does not hold yet. */
  activeForSite(site: string): Promise<JobRow[]>;
  deleteJob(id: string): Promise<void>;
  /** Tells the other hub processes on this store of `event` (`site:NAME`, `job:ID`); a no-op for SQLite. */
  publish(event: string): Promise<void>;
  /** `listener` hears the events other hub processes publish. */
  subscribe(listener: (event: string) => void): void;
}

/** The columns a JobRow has, the only names `update` takes (they become SQL). */
export const JOB_COLUMNS = ['id', 'site', 'submitter', 'state', 'exit_code', 'pid', 'request', 'log_bytes', 'inputs_ready', 'results_ready', 'cancel_requested', 'cancel_sent', 'claimed', 'submitted_at', 'started_at'] as const satisfies readonly (keyof JobRow)[];

export function checkColumns(fields: object): string[] {
  const keys = Object.keys(fields);
  for (const k of keys) if (k === 'id' || !(JOB_COLUMNS as readonly string[]).includes(k)) throw new Error(`no job column ${k}`);
  return keys;
}

export class SqliteStore implements HubStore {
  readonly dir: string;
  readonly recheckMs = undefined;
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

  get describe(): string {
    return `sqlite ${join(this.dir, 'hub.sqlite')}`;
  }

  async close(): Promise<void> {
    this.db.close();
  }

  async addPrincipal(kind: 'site' | 'submitter', name: string): Promise<string> {
    const token = newToken();
    this.db
      .prepare(
        `INSERT INTO principals (kind, name, token_hash, revoked, created_at) VALUES (?, ?, ?, 0, ?)
         ON CONFLICT (kind, name) DO UPDATE SET token_hash = excluded.token_hash, revoked = 0`,
      )
      .run(kind, name, hashToken(token), Date.now());
    return token;
  }

  async revoke(kind: 'site' | 'submitter', name: string): Promise<boolean> {
    return this.db.prepare('UPDATE principals SET revoked = 1 WHERE kind = ? AND name = ?').run(kind, name).changes > 0;
  }

  async principals(): Promise<{ kind: string; name: string; revoked: number }[]> {
    return this.db.prepare('SELECT kind, name, revoked FROM principals ORDER BY kind, name').all() as { kind: string; name: string; revoked: number }[];
  }

  async whoIs(token: string): Promise<{ kind: 'site' | 'submitter'; name: string } | undefined> {
    const row = this.db.prepare('SELECT kind, name FROM principals WHERE token_hash = ? AND revoked = 0').get(hashToken(token)) as { kind: 'site' | 'submitter'; name: string } | undefined;
    return row;
  }

  async siteExists(name: string): Promise<boolean> {
    return this.db.prepare("SELECT 1 FROM principals WHERE kind = 'site' AND name = ? AND revoked = 0").get(name) !== undefined;
  }

  async job(id: string): Promise<JobRow | undefined> {
    return this.row(id);
  }

  private row(id: string): JobRow | undefined {
    return this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
  }

  async createJob(id: string, site: string, submitter: string): Promise<void> {
    this.db.prepare("INSERT INTO jobs (id, site, submitter, state) VALUES (?, ?, ?, 'created') ON CONFLICT (id) DO NOTHING").run(id, site, submitter);
  }

  async update(id: string, fields: Partial<Omit<JobRow, 'id'>>): Promise<void> {
    this.set(id, fields);
  }

  private set(id: string, fields: Partial<Omit<JobRow, 'id'>>): void {
    const keys = checkColumns(fields);
    if (keys.length === 0) return;
    this.db.prepare(`UPDATE jobs SET ${keys.map((k) => `${k} = @${k}`).join(', ')} WHERE id = @id`).run({ ...fields, id });
  }

  /** Runs `fn` as one transaction: all of it or none. */
  private tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  async files(job: string, kind: Kind): Promise<(FileEntry & { idx: number })[]> {
    const rows = this.db.prepare('SELECT idx, name, size, sha256, mode, mtime_ms, link FROM files WHERE job = ? AND kind = ? ORDER BY idx').all(job, kind) as FileRow[];
    return rows.map((r) => ({ idx: r.idx, name: r.name, size: r.size, sha256: r.sha256, mode: r.mode, mtimeMs: r.mtime_ms, ...(r.link !== null ? { link: r.link } : {}) }));
  }

  async setFiles(job: string, kind: Kind, files: readonly FileEntry[]): Promise<void> {
    this.tx(() => {
      this.db.prepare('DELETE FROM files WHERE job = ? AND kind = ?').run(job, kind);
      const insert = this.db.prepare('INSERT INTO files (job, kind, idx, name, size, sha256, mode, mtime_ms, link) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
      files.forEach((f, idx) => insert.run(job, kind, idx, f.name, f.size, f.sha256, f.mode, f.mtimeMs, f.link ?? null));
    });
  }

  async listJobs(where: { site?: string; submitter?: string }): Promise<JobRow[]> {
    if (where.site !== undefined && where.submitter !== undefined) return this.db.prepare('SELECT * FROM jobs WHERE site = ? AND submitter = ? ORDER BY rowid').all(where.site, where.submitter) as JobRow[];
    if (where.site !== undefined) return this.db.prepare('SELECT * FROM jobs WHERE site = ? ORDER BY rowid').all(where.site) as JobRow[];
    return this.db.prepare('SELECT * FROM jobs WHERE submitter = ? ORDER BY rowid').all(where.submitter) as JobRow[];
  }

  async takeWork(site: string): Promise<{ start: JobRow[]; cancel: JobRow[] }> {
    return this.tx(() => {
      const start = this.db.prepare("SELECT * FROM jobs WHERE site = ? AND state = 'queued' AND claimed = 0 ORDER BY rowid").all(site) as JobRow[];
      const cancel = this.db.prepare('SELECT * FROM jobs WHERE site = ? AND claimed = 1 AND cancel_requested = 1 AND cancel_sent = 0').all(site) as JobRow[];
      for (const j of start) this.set(j.id, { claimed: 1 });
      for (const j of cancel) this.set(j.id, { cancel_sent: 1 });
      return { start, cancel };
    });
  }

  async activeForSite(site: string): Promise<JobRow[]> {
    return this.db.prepare('SELECT * FROM jobs WHERE site = ? AND claimed = 1 AND results_ready = 0 ORDER BY rowid').all(site) as JobRow[];
  }

  async deleteJob(id: string): Promise<void> {
    this.tx(() => {
      this.db.prepare('DELETE FROM files WHERE job = ?').run(id);
      this.db.prepare('DELETE FROM jobs WHERE id = ?').run(id);
    });
  }

  // One hub process per SQLite database: its own in-process events are all there are.
  async publish(_event: string): Promise<void> {}

  subscribe(_listener: (event: string) => void): void {}
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
  return loadOptional<typeof Database>('better-sqlite3', 'the hub needs the better-sqlite3 package, which is not installed', 'npm install better-sqlite3@12 (an optional peer dependency of mint-ssh-exec, for hub machines; 13 crashes Node 20)');
}

/**
 * An optional peer dependency, loaded only where it is used (better-sqlite3, pg: hub machines only),
 * its absence a ConfigError that says what to install.
 */
export function loadOptional<T>(name: string, missing: string, hint: string): T {
  try {
    return createRequire(import.meta.url)(name) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') throw new ConfigError(missing, { hint });
    throw error;
  }
}

/** Where the hub keeps its state: DATA/hub.sqlite (the default), or a PostgreSQL database. */
export type StoreSpec = { kind: 'sqlite' } | { kind: 'postgres'; url: string };

/**
 * `hub --store` (or MINT_HUB_STORE): `sqlite`, or a `postgres://` / `postgresql://` URL as libpq
 * reads it (`postgres://USER@HOST:PORT/DB`, `?host=/run/postgresql` for a socket). A password is
 * better kept out of it (PGPASSWORD or ~/.pgpass): every local user can read a process's argv.
 */
export function parseStore(value: string | undefined): StoreSpec {
  if (value === undefined || value === '' || value === 'sqlite') return { kind: 'sqlite' };
  if (/^postgres(ql)?:\/\//.test(value)) {
    try {
      new URL(value);
    } catch {
      throw new ConfigError(`--store: ${redactUrl(value)} is not a valid URL`, { hint: 'postgres://USER@HOST:PORT/DATABASE (the password in PGPASSWORD or ~/.pgpass)' });
    }
    return { kind: 'postgres', url: value };
  }
  throw new ConfigError(`--store: ${JSON.stringify(redactUrl(value))} is neither sqlite nor a postgres:// URL`, { hint: 'sqlite (DATA/hub.sqlite, the default) or postgres://USER@HOST:PORT/DATABASE' });
}

/** The URL with its password, if any, shown as ***: for messages and logs. */
export function redactUrl(value: string): string {
  try {
    const url = new URL(value);
    if (url.password !== '') url.password = '***';
    for (const key of [...url.searchParams.keys()]) if (/pass/i.test(key)) url.searchParams.set(key, '***');
    return url.href;
  } catch {
    // Not a URL: hide whatever sits between "://user:" and "@".
    return value.replace(/(:\/\/[^:/@]*:)[^@]*@/, '$1***@');
  }
}
