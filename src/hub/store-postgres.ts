/**
 * The hub's state in PostgreSQL, for several hub replicas behind one name (issue 18). The same
 * tables as the SQLite store (store.ts), prefixed mint_hub_ so that they can share a database; every
 * method is one transaction, committed (PostgreSQL's defaults: fsync, synchronous_commit on) before
 * the hub answers. File contents stay files under DATA/jobs/, which replicas must share (README).
 *
 * Across replicas:
 * - A job is handed to an agent once, whichever replica the agent asks: the claim is a conditional
 *   `UPDATE ... WHERE claimed = 0 RETURNING`. Under READ COMMITTED a second transaction updating
 *   the same row waits for the first and then re-checks the WHERE clause against the committed row
 *   (PostgreSQL's "EvalPlanQual"), so it finds claimed = 1 and skips the row.
 * - Long-polls wake on LISTEN/NOTIFY: a replica that changes a job publishes `job:ID` or `site:NAME`
 *   with pg_notify after its commit; every replica listens on one dedicated connection. A
 *   notification sent while a listener reconnects is lost, so waiting requests also re-read the
 *   store every RECHECK_MS (a backstop, not the wake-up path).
 *
 * pg is an optional peer dependency, loaded only when a hub uses PostgreSQL.
 */
import type * as Pg from 'pg';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import type { FileEntry } from '../pull/wire.js';
import { checkColumns, hashToken, JOB_COLUMNS, loadOptional, newToken, redactUrl, type HubStore, type JobRow, type Kind } from './store.js';

const CHANNEL = 'mint_hub';
const RECHECK_MS = 5000;
const COLUMNS = JOB_COLUMNS.join(', ');

// One statement list, run under an advisory lock: two replicas starting at once would otherwise
// race in CREATE TABLE IF NOT EXISTS (a duplicate key in pg_type).
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS mint_hub_principals (
    kind TEXT NOT NULL CHECK (kind IN ('site', 'submitter')),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
  );
  CREATE TABLE IF NOT EXISTS mint_hub_jobs (
    seq BIGSERIAL NOT NULL,
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    submitter TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    pid INTEGER,
    request TEXT,
    log_bytes BIGINT NOT NULL DEFAULT 0,
    inputs_ready INTEGER NOT NULL DEFAULT 0,
    results_ready INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancel_sent INTEGER NOT NULL DEFAULT 0,
    claimed INTEGER NOT NULL DEFAULT 0,
    submitted_at BIGINT,
    started_at BIGINT
  );
  CREATE INDEX IF NOT EXISTS mint_hub_jobs_site ON mint_hub_jobs (site, state);
  CREATE TABLE IF NOT EXISTS mint_hub_files (
    job TEXT NOT NULL,
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    mode INTEGER NOT NULL,
    mtime_ms DOUBLE PRECISION NOT NULL,
    link TEXT,
    PRIMARY KEY (job, kind, idx)
  );
`;
// Any constant both replicas agree on (the bytes of "mint-hub").
const SCHEMA_LOCK = 0x6d696e74;

export class PostgresStore implements HubStore {
  readonly recheckMs = RECHECK_MS;
  readonly describe: string;
  private readonly pg: typeof Pg;
  private readonly pool: Pg.Pool;
  private readonly config: Pg.ClientConfig;
  private readonly secrets: string[];
  /** This process, so that it skips its own notifications (its local events already fired). */
  private readonly replica = randomBytes(8).toString('hex');
  private readonly listeners: ((event: string) => void)[] = [];
  private listener: Pg.Client | undefined;
  private closed = false;

  private constructor(url: string) {
    this.pg = loadPg();
    this.describe = `postgres ${redactUrl(url)}`;
    const password = safeDecode(new URL(url).password);
    this.secrets = [password, process.env.PGPASSWORD ?? ''].filter((s) => s.length >= 3);
    // BIGINT (oid 20) as a number: sizes, offsets and millisecond times stay far below 2^53.
    const types: Pg.CustomTypesConfig = {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === 20 ? (v: string) => (v === null ? null : Number(v)) : this.pg.types.getTypeParser(oid, format))) as Pg.CustomTypesConfig['getTypeParser'],
    };
    this.config = { connectionString: url, types, connectionTimeoutMillis: 10_000, application_name: 'mint-ssh-exec hub' };
    this.pool = new this.pg.Pool({ ...this.config, max: 10 });
    // An idle connection that dies (the server restarts) must not take the hub down; the next
    // query opens a new one.
    this.pool.on('error', (error) => this.log(`PostgreSQL connection lost: ${this.scrub(error.message)}`));
  }

  /** `events` false: no listening connection (the CLI's one-shot commands, which wait for nothing). */
  static async open(data: string, url: string, events = true): Promise<PostgresStore> {
    mkdirSync(join(data, 'jobs'), { recursive: true, mode: 0o700 });
    const store = new PostgresStore(url);
    try {
      await store.tx(async (c) => {
        await c.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
        await c.query(SCHEMA);
      });
      if (events) await store.listen();
    } catch (error) {
      await store.close().catch(() => undefined);
      throw new ConfigError(`cannot use the PostgreSQL store ${redactUrl(url)}: ${store.scrub((error as Error).message)}`, {
        hint: 'check the URL, that the server runs and accepts this user (the password from the URL, PGPASSWORD or ~/.pgpass)',
      });
    }
    return store;
  }

  async close(): Promise<void> {
    this.closed = true;
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
    await this.pool.end();
  }

  // ------------------------------------------------------------------------------------------------

  async addPrincipal(kind: 'site' | 'submitter', name: string): Promise<string> {
    const token = newToken();
    await this.pool.query(
      `INSERT INTO mint_hub_principals (kind, name, token_hash, revoked, created_at) VALUES ($1, $2, $3, 0, $4)
       ON CONFLICT (kind, name) DO UPDATE SET token_hash = excluded.token_hash, revoked = 0`,
      [kind, name, hashToken(token), Date.now()],
    );
    return token;
  }

  async revoke(kind: 'site' | 'submitter', name: string): Promise<boolean> {
    return ((await this.pool.query('UPDATE mint_hub_principals SET revoked = 1 WHERE kind = $1 AND name = $2', [kind, name])).rowCount ?? 0) > 0;
  }

  async principals(): Promise<{ kind: string; name: string; revoked: number }[]> {
    return (await this.pool.query<{ kind: string; name: string; revoked: number }>('SELECT kind, name, revoked FROM mint_hub_principals ORDER BY kind, name')).rows;
  }

  async whoIs(token: string): Promise<{ kind: 'site' | 'submitter'; name: string } | undefined> {
    return (await this.pool.query<{ kind: 'site' | 'submitter'; name: string }>('SELECT kind, name FROM mint_hub_principals WHERE token_hash = $1 AND revoked = 0', [hashToken(token)])).rows[0];
  }

  async siteExists(name: string): Promise<boolean> {
    return (await this.pool.query("SELECT 1 FROM mint_hub_principals WHERE kind = 'site' AND name = $1 AND revoked = 0", [name])).rows.length > 0;
  }

  async job(id: string): Promise<JobRow | undefined> {
    return (await this.pool.query<JobRow>(`SELECT ${COLUMNS} FROM mint_hub_jobs WHERE id = $1`, [id])).rows[0];
  }

  async createJob(id: string, site: string, submitter: string): Promise<void> {
    await this.pool.query("INSERT INTO mint_hub_jobs (id, site, submitter, state) VALUES ($1, $2, $3, 'created') ON CONFLICT (id) DO NOTHING", [id, site, submitter]);
  }

  async update(id: string, fields: Partial<Omit<JobRow, 'id'>>): Promise<void> {
    const keys = checkColumns(fields);
    if (keys.length === 0) return;
    const values = keys.map((k) => fields[k as keyof typeof fields]);
    await this.pool.query(`UPDATE mint_hub_jobs SET ${keys.map((k, i) => `${k} = $${i + 2}`).join(', ')} WHERE id = $1`, [id, ...values]);
  }

  async files(job: string, kind: Kind): Promise<(FileEntry & { idx: number })[]> {
    const rows = (
      await this.pool.query<{ idx: number; name: string; size: number; sha256: string; mode: number; mtime_ms: number; link: string | null }>(
        'SELECT idx, name, size, sha256, mode, mtime_ms, link FROM mint_hub_files WHERE job = $1 AND kind = $2 ORDER BY idx',
        [job, kind],
      )
    ).rows;
    return rows.map((r) => ({ idx: r.idx, name: r.name, size: r.size, sha256: r.sha256, mode: r.mode, mtimeMs: r.mtime_ms, ...(r.link !== null ? { link: r.link } : {}) }));
  }

  async setFiles(job: string, kind: Kind, files: readonly FileEntry[]): Promise<void> {
    await this.tx(async (c) => {
      await c.query('DELETE FROM mint_hub_files WHERE job = $1 AND kind = $2', [job, kind]);
      for (const [idx, f] of files.entries()) {
        await c.query('INSERT INTO mint_hub_files (job, kind, idx, name, size, sha256, mode, mtime_ms, link) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)', [job, kind, idx, f.name, f.size, f.sha256, f.mode, f.mtimeMs, f.link ?? null]);
      }
    });
  }

  async listJobs(where: { site?: string; submitter?: string }): Promise<JobRow[]> {
    const clauses: string[] = [];
    const values: string[] = [];
    if (where.site !== undefined) clauses.push(`site = $${values.push(where.site)}`);
    if (where.submitter !== undefined) clauses.push(`submitter = $${values.push(where.submitter)}`);
    if (clauses.length === 0) throw new Error('listJobs needs a site or a submitter');
    return (await this.pool.query<JobRow>(`SELECT ${COLUMNS} FROM mint_hub_jobs WHERE ${clauses.join(' AND ')} ORDER BY seq`, values)).rows;
  }

  async takeWork(site: string): Promise<{ start: JobRow[]; cancel: JobRow[] }> {
    return this.tx(async (c) => {
      // Conditional updates: of two replicas claiming at once, the second re-checks `claimed = 0`
      // (`cancel_sent = 0`) after the first commits, and skips the row (see the top of this file).
      const start = await c.query<JobRow & { seq: number }>(`UPDATE mint_hub_jobs SET claimed = 1 WHERE site = $1 AND state = 'queued' AND claimed = 0 RETURNING seq, ${COLUMNS}`, [site]);
      const cancel = await c.query<JobRow & { seq: number }>(
        `UPDATE mint_hub_jobs SET cancel_sent = 1 WHERE site = $1 AND claimed = 1 AND cancel_requested = 1 AND cancel_sent = 0 RETURNING seq, ${COLUMNS}`,
        [site],
      );
      const bySeq = (rows: (JobRow & { seq: number })[]): JobRow[] => rows.sort((a, b) => a.seq - b.seq).map(({ seq: _seq, ...row }) => row);
      return { start: bySeq(start.rows), cancel: bySeq(cancel.rows) };
    });
  }

  async activeForSite(site: string): Promise<JobRow[]> {
    return (await this.pool.query<JobRow>(`SELECT ${COLUMNS} FROM mint_hub_jobs WHERE site = $1 AND claimed = 1 AND results_ready = 0 ORDER BY seq`, [site])).rows;
  }

  async deleteJob(id: string): Promise<void> {
    await this.tx(async (c) => {
      await c.query('DELETE FROM mint_hub_files WHERE job = $1', [id]);
      await c.query('DELETE FROM mint_hub_jobs WHERE id = $1', [id]);
    });
  }

  // ------------------------------------------------------------------------------------------------
  // Events between replicas

  async publish(event: string): Promise<void> {
    await this.pool.query('SELECT pg_notify($1, $2)', [CHANNEL, `${this.replica} ${event}`]);
  }

  subscribe(listener: (event: string) => void): void {
    this.listeners.push(listener);
  }

  /** Connects the listening connection; once it is up, keeps it up (reconnecting each second) until close. */
  private async listen(): Promise<void> {
    const client = new this.pg.Client(this.config);
    client.on('error', (error) => this.log(`PostgreSQL listener: ${this.scrub(error.message)}`));
    client.on('notification', (n) => {
      const [from, event] = (n.payload ?? '').split(' ');
      if (from !== this.replica && event) for (const l of this.listeners) l(event);
    });
    client.once('end', () => {
      if (this.closed || this.listener !== client) return;
      this.listener = undefined;
      this.log('PostgreSQL listener lost; reconnecting (long-polls re-read the store meanwhile)');
      const retry = (): void => {
        if (this.closed) return;
        this.listen().then(
          () => this.log('PostgreSQL listener back'),
          () => setTimeout(retry, 1000).unref(),
        );
      };
      setTimeout(retry, 1000).unref();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
  }

  // ------------------------------------------------------------------------------------------------

  private async tx<T>(fn: (client: Pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const value = await fn(client);
      await client.query('COMMIT');
      return value;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  /** A message with the password, should a driver ever repeat it, shown as ***. */
  private scrub(message: string): string {
    return this.secrets.reduce((m, s) => m.split(s).join('***'), message);
  }

  private log(line: string): void {
    if (!this.closed) process.stderr.write(`mint-ssh-exec hub: ${line}\n`);
  }
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** Like better-sqlite3 (store.ts), pg is an optional peer: only a hub on PostgreSQL loads it. */
function loadPg(): typeof Pg {
  return loadOptional<typeof Pg>('pg', 'a hub on PostgreSQL needs the pg package, which is not installed', 'npm install pg@8 (an optional peer dependency of mint-ssh-exec, for hub machines)');
}
