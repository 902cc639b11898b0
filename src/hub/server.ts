/**
 * The hub (issue 18): the MInt side's HTTPS end of pull mode. Modules submit jobs with a submit
 * token; each site's agent, which opens no port, long-polls for its own site's jobs with the site's
 * token, runs them through the gateway script, and sends back the log (by byte offset) and the
 * results (by file, resumable by offset, checked by SHA-256). A token sees only its own jobs: any
 * other job id reads as "no such job" (404), never "not yours". Every acknowledgement is given after
 * the bytes are fsynced and the row is committed (store.ts), so a restart loses nothing.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { EventEmitter } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isJobId, checkProgramArgs, checkProgramRequest, checkResources } from '../gateway/protocol.js';
import { MintSshError } from '../errors.js';
import { API, checkAgentInfo, checkManifest, checkRefusal, hashFile, SITE_NAME, type AgentJob, type AgentInfo, type HubJob, type SiteReport, type StartRequest } from '../pull/wire.js';
import { FINAL, SqliteStore, hubJob, startRequest, type HubStore, type JobRow, type Kind } from './store.js';
import type { JobState } from '../types.js';

export interface HubOptions {
  data: string;
  host: string;
  port: number;
  /** PEM server certificate and key (default DATA/server.pem, DATA/server.key from `hub init`). */
  cert: string;
  key: string;
  /** Longest long-poll a client may ask for (ms). */
  maxWaitMs?: number;
  /** Connections held at once (default 4096); more are dropped. */
  maxConnections?: number;
  /** Where the state is (default SQLite in `data`); the hub closes it on close. */
  store?: HubStore;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

type Who = { kind: 'site' | 'submitter'; name: string };

const MAX_JSON = 8 * 1024 * 1024;
const LOG_CHUNK = 1024 * 1024;

export class Hub {
  readonly store: HubStore;
  private readonly server: https.Server;
  private readonly bus = new EventEmitter();
  private readonly counts = new Map<string, number>();
  private readonly maxWaitMs: number;
  private readonly options: HubOptions;
  /** Files and logs being written now, by whom: two writers of one never interleave (exclusive()). */
  private readonly writing = new Map<string, { req: IncomingMessage | undefined; done: Promise<unknown> }>();
  /**
   * What this hub process has seen of each site's agent, for `probe` (in memory: a restarted hub
   * knows an agent again at its next poll, within the agent's backoff of at most 30 s).
   */
  private readonly agents = new Map<string, { lastSeenAt: number; polling: number; info?: AgentInfo; infoAt?: number }>();

  constructor(options: HubOptions) {
    this.options = options;
    this.store = options.store ?? new SqliteStore(options.data);
    // Other replicas' changes (PostgreSQL store) wake this hub's long-polls as its own do.
    this.store.subscribe((event) => this.fire(event));
    this.maxWaitMs = options.maxWaitMs ?? 60_000;
    this.bus.setMaxListeners(0);
    this.server = https.createServer(
      {
        cert: options.cert,
        key: options.key,
        // Slow clients (slowloris): a TLS handshake not done in 10 s (Node's default is 120 s: 20
        // silent TCP connections stayed 30 s and more in hub-hostile.test.ts), and request headers
        // not complete 10 s after the request began, end the connection; checked every second.
        handshakeTimeout: 10_000,
        connectionsCheckingInterval: 1_000,
      },
      (req, res) => {
        this.handle(req, res).catch((error: unknown) => this.fail(res, error));
      },
    );
    this.server.headersTimeout = 10_000;
    // A body may take as long as its bytes keep coming (a 1 GiB input over a slow link)...
    this.server.requestTimeout = 0;
    // ...but a connection silent for longer than the longest long-poll plus a minute is let go.
    this.server.timeout = this.maxWaitMs + 60_000;
    this.server.keepAliveTimeout = 65_000;
    // Bounded file descriptors: past this many connections new ones are dropped at once.
    this.server.maxConnections = options.maxConnections ?? 4096;
  }

  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => resolve());
    });
    const address = this.server.address();
    const port = typeof address === 'object' && address ? address.port : this.options.port;
    return { host: this.options.host, port };
  }

  async close(): Promise<void> {
    this.bus.emit('closing');
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await this.store.close();
  }

  /** Wakes the long-polls waiting for `event`, here and on the store's other hub processes. */
  private emit(event: string): void {
    this.fire(event);
    this.store.publish(event).catch((error: unknown) => process.stderr.write(`mint-ssh-exec hub: cannot publish ${event}: ${(error as Error).message}\n`));
  }

  private fail(res: ServerResponse, error: unknown): void {
    let status = 500;
    let body: Record<string, unknown> = { code: 'E_INTERNAL', message: 'internal error' };
    if (error instanceof HttpError) {
      status = error.status;
      body = { code: error.code, message: error.message, ...error.extra };
    } else if (error instanceof MintSshError && error.code === 'INPUT_INVALID') {
      status = 400;
      body = { code: 'E_USAGE', message: error.message };
    } else if (!(res.headersSent && (error as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE')) {
      // (A client that went away during a download is no fault of the hub's.)
      process.stderr.write(`mint-ssh-exec hub: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A request whose body was not read to its end: close after the answer, read no more of it.
    if (!res.req.complete) res.setHeader('connection', 'close');
    send(res, status, { error: body });
  }

  private async who(req: IncomingMessage): Promise<Who> {
    const m = /^Bearer ([A-Za-z0-9_.-]{16,256})$/.exec(req.headers.authorization ?? '');
    const who = m ? await this.store.whoIs(m[1]!) : undefined;
    if (!who) throw new HttpError(401, 'E_AUTH', 'no valid token (unknown or revoked)');
    return who;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://hub');
    const path = url.pathname;
    if (!path.startsWith(`${API}/`)) throw new HttpError(404, 'E_NOTFOUND', 'no such endpoint');
    const who = await this.who(req);
    const parts = path.slice(API.length + 1).split('/');
    const method = req.method ?? 'GET';
    if (parts[0] === 'agent') {
      if (who.kind !== 'site') throw new HttpError(403, 'E_AUTH', 'agent endpoints take a site token');
      const seen = this.agents.get(who.name) ?? { lastSeenAt: 0, polling: 0 };
      seen.lastSeenAt = Date.now();
      this.agents.set(who.name, seen);
      return this.agentRoute(who.name, method, parts.slice(1), url, req, res);
    }
    if (parts[0] === 'sites' && parts.length === 2 && method === 'GET') {
      if (who.kind !== 'submitter') throw new HttpError(403, 'E_AUTH', 'site reports take a submit token, never a site token');
      return send(res, 200, await this.siteReport(parts[1]!));
    }
    if (parts[0] === 'jobs') {
      if (who.kind !== 'submitter') throw new HttpError(403, 'E_AUTH', 'job endpoints take a submit token, never a site token');
      return this.submitRoute(who.name, method, parts.slice(1), url, req, res);
    }
    throw new HttpError(404, 'E_NOTFOUND', 'no such endpoint');
  }

  // ------------------------------------------------------------------------------------------------
  // The submit side (MInt's modules)

  private async ownJob(submitter: string, id: string | undefined): Promise<JobRow> {
    const row = id !== undefined && isJobId(id) ? await this.store.job(id) : undefined;
    if (!row || row.submitter !== submitter) throw new HttpError(404, 'E_NOJOB', `no job ${id}`);
    return row;
  }

  private async submitRoute(submitter: string, method: string, parts: string[], url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const [id, what, idx] = parts;
    if (id === undefined || id === '') {
      if (method !== 'GET') throw new HttpError(405, 'E_USAGE', 'GET only');
      const site = url.searchParams.get('site') ?? undefined;
      return send(res, 200, { jobs: (await this.store.listJobs({ submitter, ...(site ? { site } : {}) })).map(hubJob) });
    }
    if (method === 'POST' && what === undefined) {
      // Create: idempotent for the same submitter and site (a retry after a lost answer).
      if (!isJobId(id)) throw new HttpError(400, 'E_USAGE', 'a job id is a lowercase UUID');
      const body = await readJson<{ site?: unknown }>(req);
      const site = body.site;
      if (typeof site !== 'string' || !SITE_NAME.test(site) || !(await this.store.siteExists(site))) throw new HttpError(404, 'E_NOSITE', `no site ${String(site)} on this hub`);
      const existing = await this.store.job(id);
      if (existing && (existing.submitter !== submitter || existing.site !== site)) throw new HttpError(409, 'E_STATE', `job ${id} exists`);
      if (!existing) await this.store.createJob(id, site, submitter);
      // Two creates of one id at once (say on two replicas): the row is the first one's.
      const made = await this.store.job(id);
      if (!made || made.submitter !== submitter || made.site !== site) throw new HttpError(409, 'E_STATE', `job ${id} exists`);
      return send(res, 200, hubJob(made));
    }
    const row = await this.ownJob(submitter, id);
    if (what === undefined && method === 'GET') return send(res, 200, await this.view(row));
    if (what === undefined && method === 'DELETE') {
      if (row.state === 'running' || (row.state === 'queued' && row.claimed === 1)) throw new HttpError(409, 'E_STATE', `job ${id} is still ${row.state}; cancel it first`);
      await this.store.deleteJob(id);
      await rm(this.jobDir(id), { recursive: true, force: true });
      this.emit(`job:${id}`);
      return send(res, 200, { removed: true });
    }
    if (what === 'inputs') return this.filesRoute(row, 'in', method, idx, url, req, res, row.state === 'created');
    if (what === 'start' && method === 'POST') {
      const body = await readJson<StartRequest>(req);
      if (row.state === 'lost' && row.started_at === null && (await this.view(row)).refusal) {
        // The site refused it before it ran (full: E_LIMIT) and the submitter asks again
        // (runRemote's waitForSlot): queued afresh, as the SSH method's start is simply sent again.
        // The row first: a crash before the files go leaves a log the next append cuts to 0.
        await this.store.setFiles(row.id, 'out', []);
        await this.store.update(row.id, { state: 'queued', claimed: 0, results_ready: 0, log_bytes: 0, exit_code: null, pid: null, cancel_requested: 0, cancel_sent: 0, submitted_at: Date.now() });
        for (const name of ['refusal.json', 'log', 'out']) await rm(join(this.jobDir(row.id), name), { recursive: true, force: true });
        this.emit(`site:${row.site}`);
        return send(res, 200, await this.view((await this.store.job(row.id))!));
      }
      if (row.state !== 'created') return send(res, 200, await this.view(row));
      const request = checkStart(body);
      await this.verifyFiles(row.id, 'in');
      await this.store.update(row.id, { state: 'queued', request: JSON.stringify(request), inputs_ready: 1, submitted_at: Date.now() });
      this.emit(`site:${row.site}`);
      return send(res, 200, hubJob((await this.store.job(row.id))!));
    }
    if (what === 'log' && method === 'GET') return this.sendLog(row, url, res);
    if (what === 'cancel' && method === 'POST') {
      if (FINAL.has(row.state)) return send(res, 200, hubJob(row));
      if (row.state === 'created' || (row.state === 'queued' && row.claimed === 0)) {
        // Never handed to the site: it never ran, and never will.
        await this.store.update(row.id, { state: 'cancelled', cancel_requested: 1 });
      } else {
        await this.store.update(row.id, { cancel_requested: 1 });
        this.emit(`site:${row.site}`);
      }
      this.emit(`job:${row.id}`);
      return send(res, 200, hubJob((await this.store.job(row.id))!));
    }
    if (what === 'results' && method === 'GET' && idx === undefined) {
      const ready = await this.waitFor(row.id, url, (r) => r === undefined || r.results_ready === 1 || (r.state === 'cancelled' && r.claimed === 0));
      if (!ready) throw new HttpError(404, 'E_NOJOB', `no job ${id}`);
      return send(res, 200, { job: hubJob(ready), files: ready.results_ready === 1 ? await this.store.files(row.id, 'out') : [] });
    }
    if (what === 'results' && method === 'GET') return this.sendFile(row, 'out', idx, req, res);
    throw new HttpError(404, 'E_NOTFOUND', 'no such endpoint');
  }

  // ------------------------------------------------------------------------------------------------
  // The agent (one site)

  private async siteJob(site: string, id: string | undefined): Promise<JobRow> {
    const row = id !== undefined && isJobId(id) ? await this.store.job(id) : undefined;
    // Another site's job reads exactly as a missing one.
    if (!row || row.site !== site || row.claimed !== 1) throw new HttpError(404, 'E_NOJOB', `no job ${id}`);
    return row;
  }

  private async agentRoute(site: string, method: string, parts: string[], url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (parts[0] === 'next' && method === 'GET') {
      this.countPoll(site, res);
      const wait = this.waitMs(url);
      const deadline = Date.now() + wait;
      for (;;) {
        const since = this.fired(`site:${site}`);
        const work = await this.store.takeWork(site);
        if (work.start.length + work.cancel.length > 0 || Date.now() >= deadline) {
          return send(res, 200, { jobs: await Promise.all([...work.start, ...work.cancel].map((r) => this.agentJob(r))) });
        }
        if (!(await this.wake(`site:${site}`, deadline - Date.now(), req, since))) return;
      }
    }
    if (parts[0] === 'info' && method === 'POST') {
      const seen = this.agents.get(site)!;
      seen.info = checkAgentInfo(await readJson(req));
      seen.infoAt = Date.now();
      return send(res, 200, { ok: true });
    }
    if (parts[0] !== 'jobs') throw new HttpError(404, 'E_NOTFOUND', 'no such endpoint');
    const [, id, what, idx] = parts;
    if (id === undefined) return send(res, 200, { jobs: await Promise.all((await this.store.activeForSite(site)).map((r) => this.agentJob(r))) });
    const row = await this.siteJob(site, id);
    if (what === undefined && method === 'GET') return send(res, 200, await this.agentJob(row));
    if (what === 'inputs' && method === 'GET' && idx !== undefined) return this.sendFile(row, 'in', idx, req, res);
    if (what === 'state' && method === 'POST') {
      const body = await readJson<{ state?: unknown; pid?: unknown; exitCode?: unknown; refusal?: unknown }>(req);
      const state = body.state as JobState;
      if (!['running', 'exited', 'cancelled', 'lost', 'queued'].includes(state)) throw new HttpError(400, 'E_USAGE', 'bad state');
      const refused = state === 'lost' && row.started_at === null ? checkRefusal(body.refusal) : undefined;
      if (!FINAL.has(row.state) && refused) {
        // Durable before the state that points at it (a file, not a column: store.ts stays as it is).
        await mkdir(this.jobDir(row.id), { recursive: true, mode: 0o700 });
        const handle = await open(join(this.jobDir(row.id), 'refusal.json'), 'w', 0o600);
        try {
          await handle.writeFile(JSON.stringify(refused));
          await handle.datasync();
        } finally {
          await handle.close();
        }
      }
      if (!FINAL.has(row.state)) {
        await this.store.update(row.id, {
          state,
          ...(typeof body.pid === 'number' ? { pid: body.pid } : {}),
          ...(typeof body.exitCode === 'number' ? { exit_code: body.exitCode } : {}),
          ...(state === 'running' && row.started_at === null ? { started_at: Date.now() } : {}),
          // A refused job has no results: the state and "nothing to deliver" in one row change, so an
          // agent that dies before saying it leaves a job a new agent resumes (and tries again).
          ...(refused ? { results_ready: 1 } : {}),
        });
        this.emit(`job:${row.id}`);
      }
      return send(res, 200, hubJob((await this.store.job(row.id))!));
    }
    if (what === 'log' && method === 'POST') return this.appendLog(row, url, req, res);
    if (what === 'results') return this.filesRoute(row, 'out', method, idx, url, req, res, row.results_ready === 0);
    throw new HttpError(404, 'E_NOTFOUND', 'no such endpoint');
  }

  /** The submit side's view of a job: its row, and the site's refusal of a job it never ran. */
  private async view(row: JobRow): Promise<HubJob> {
    const job = hubJob(row);
    if (row.state !== 'lost' || row.started_at !== null) return job;
    const refusal = await readFile(join(this.jobDir(row.id), 'refusal.json'), 'utf8').then(
      (text) => checkRefusal(JSON.parse(text)),
      () => undefined,
    );
    return refusal ? { ...job, refusal } : job;
  }

  /** The site's agent has a long-poll open until this response is done (answered, or its connection gone). */
  private countPoll(site: string, res: ServerResponse): void {
    const seen = this.agents.get(site)!;
    seen.polling += 1;
    res.once('close', () => {
      seen.polling -= 1;
      seen.lastSeenAt = Date.now();
    });
  }

  /** What the hub knows of a site and its agent (for `probe`); an unknown or revoked site is a 404. */
  private async siteReport(site: string): Promise<SiteReport> {
    if (!SITE_NAME.test(site) || !(await this.store.siteExists(site))) throw new HttpError(404, 'E_NOSITE', `no site ${site} on this hub`);
    const seen = this.agents.get(site);
    const now = Date.now();
    return {
      site,
      now,
      agent: seen
        ? {
            lastSeenAt: seen.lastSeenAt,
            polling: seen.polling > 0,
            ...(seen.info ? { info: seen.info, infoAt: seen.infoAt! } : {}),
          }
        : undefined,
    };
  }

  private async agentJob(row: JobRow): Promise<AgentJob> {
    const request = startRequest(row);
    return {
      jobId: row.id,
      args: request.args,
      ...(request.program !== undefined ? { program: request.program } : {}),
      ...(request.env ? { env: request.env } : {}),
      ...(request.resources ? { resources: request.resources } : {}),
      inputs: (await this.store.files(row.id, 'in')).map(({ idx: _idx, ...f }) => f),
      cancelRequested: row.cancel_requested === 1,
      state: row.state,
      logBytes: row.log_bytes,
    };
  }

  // ------------------------------------------------------------------------------------------------
  // Files: a manifest, then each file's bytes by offset, then a commit that checks every SHA-256.

  private jobDir(id: string): string {
    return join(this.options.data, 'jobs', id);
  }

  private filePath(id: string, kind: Kind, idx: number): string {
    return join(this.jobDir(id), kind, String(idx));
  }

  private async filesRoute(row: JobRow, kind: Kind, method: string, idx: string | undefined, url: URL, req: IncomingMessage, res: ServerResponse, open: boolean): Promise<void> {
    if (idx === undefined && method === 'PUT') {
      if (!open) throw new HttpError(409, 'E_STATE', `job ${row.id}: its ${kind === 'in' ? 'inputs' : 'results'} are sealed`);
      const files = checkManifest((await readJson<{ files?: unknown }>(req)).files);
      const old = await this.store.files(row.id, kind);
      const same = old.length === files.length && old.every((f, i) => JSON.stringify({ ...f, idx: undefined }) === JSON.stringify({ ...files[i], idx: undefined }));
      if (!same) {
        // A new manifest (the sender's files changed): nothing of the old one may count.
        await rm(join(this.jobDir(row.id), kind), { recursive: true, force: true });
        await this.store.setFiles(row.id, kind, files);
      }
      await mkdir(join(this.jobDir(row.id), kind), { recursive: true, mode: 0o700 });
      return send(res, 200, { sizes: await this.sizes(row.id, kind) });
    }
    if (idx === undefined && method === 'GET') return send(res, 200, { sizes: await this.sizes(row.id, kind) });
    if (idx === 'commit' && method === 'POST') {
      if (kind !== 'out') throw new HttpError(404, 'E_NOTFOUND', 'no such endpoint');
      if (row.results_ready === 0) {
        await this.verifyFiles(row.id, 'out');
        await this.store.update(row.id, { results_ready: 1 });
        this.emit(`job:${row.id}`);
      }
      return send(res, 200, { resultsReady: true });
    }
    if (idx !== undefined && method === 'PUT') {
      if (!open) throw new HttpError(409, 'E_STATE', `job ${row.id}: sealed`);
      return this.receiveFile(row, kind, idx, url, req, res);
    }
    throw new HttpError(404, 'E_NOTFOUND', 'no such endpoint');
  }

  private async sizes(id: string, kind: Kind): Promise<number[]> {
    return Promise.all((await this.store.files(id, kind)).map((f) => stat(this.filePath(id, kind, f.idx)).then((s) => s.size, () => 0)));
  }

  /**
   * The bytes of file `idx` from `offset` (which must be what the hub holds): appended, fsynced,
   * never past the declared size. One writer per file at a time: two PUTs of the same chunk at once
   * (a replay racing the original) both saw the same offset and both appended, so the file held the
   * chunk twice (hub-hostile.test.ts). The newer one wins: a sender retrying after a cut link must
   * not wait for the hub to notice that the old request's connection is dead.
   */
  private async receiveFile(row: JobRow, kind: Kind, idxText: string, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const entry = (await this.store.files(row.id, kind)).find((f) => String(f.idx) === idxText);
    if (!entry || entry.link !== undefined) throw new HttpError(404, 'E_NOFILE', `no file ${idxText}`);
    const path = this.filePath(row.id, kind, entry.idx);
    const size = await this.exclusive(path, req, async () => {
      const held = await stat(path).then((s) => s.size, () => 0);
      const offset = Number(url.searchParams.get('offset'));
      if (!Number.isSafeInteger(offset) || offset !== held) throw new HttpError(409, 'E_OFFSET', `the hub holds ${held} bytes of this file`, { size: held });
      const room = entry.size - held;
      const handle = await open(path, 'a', 0o600);
      let n = 0;
      try {
        for await (const chunk of req as AsyncIterable<Buffer>) {
          if (n + chunk.length > room) throw new HttpError(413, 'E_TOOBIG', `more bytes than the file's declared ${entry.size}`);
          await handle.write(chunk);
          n += chunk.length;
        }
        await handle.datasync();
        return held + n;
      } catch (error) {
        // Whatever arrived whole stays (the sender resumes from it), but never past the declared size.
        await handle.datasync().catch(() => undefined);
        if (error instanceof HttpError) {
          await handle.truncate(held).catch(() => undefined);
          throw error;
        }
        throw new HttpError(400, 'E_TRUNCATED', 'the upload ended early', { size: held + n });
      } finally {
        await handle.close();
      }
    });
    send(res, 200, { size });
  }

  /**
   * Runs `fn` as the only writer of `key` in this hub, after the one before it. With `preempt`, the
   * one before is cut off first (its request destroyed: what it wrote whole stays, and `fn` then
   * finds the offset moved); without, it is waited for.
   */
  private async exclusive<T>(key: string, preempt: IncomingMessage | undefined, fn: () => Promise<T>): Promise<T> {
    for (let held = this.writing.get(key); held; held = this.writing.get(key)) {
      if (preempt) held.req?.destroy();
      await held.done.catch(() => undefined);
    }
    const done = fn();
    this.writing.set(key, { req: preempt, done });
    try {
      return await done;
    } finally {
      if (this.writing.get(key)?.done === done) this.writing.delete(key);
    }
  }

  private async verifyFiles(id: string, kind: Kind): Promise<void> {
    for (const f of await this.store.files(id, kind)) {
      if (f.link !== undefined) continue;
      const path = this.filePath(id, kind, f.idx);
      const size = await stat(path).then((s) => s.size, () => -1);
      if (size !== f.size) throw new HttpError(409, 'E_INCOMPLETE', `file ${f.name}: the hub holds ${Math.max(size, 0)} of ${f.size} bytes`);
      if ((await hashFile(path)) !== f.sha256) {
        await rm(path, { force: true });
        throw new HttpError(409, 'E_CHECKSUM', `file ${f.name}: SHA-256 differs from the manifest; its bytes were dropped, send it again`);
      }
    }
  }

  /** A file's bytes, from a `Range: bytes=N-` offset when given (a resumed download). */
  private async sendFile(row: JobRow, kind: Kind, idxText: string | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (kind === 'in' ? row.inputs_ready !== 1 : row.results_ready !== 1) throw new HttpError(409, 'E_STATE', 'not complete yet');
    const entry = (await this.store.files(row.id, kind)).find((f) => String(f.idx) === idxText);
    if (!entry || entry.link !== undefined) throw new HttpError(404, 'E_NOFILE', `no file ${idxText}`);
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    if (start > entry.size) throw new HttpError(416, 'E_RANGE', 'past the end');
    res.writeHead(m ? 206 : 200, { 'content-type': 'application/octet-stream', 'content-length': String(entry.size - start) });
    if (start === entry.size) {
      res.end();
      return;
    }
    await pipeline(createReadStream(this.filePath(row.id, kind, entry.idx), { start }), res);
  }

  // ------------------------------------------------------------------------------------------------
  // The log: appended by the agent at its offset, read by the submit side from its own.

  private async appendLog(row: JobRow, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const offset = Number(url.searchParams.get('offset'));
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > row.log_bytes) throw new HttpError(409, 'E_OFFSET', `the hub holds ${row.log_bytes} log bytes`, { size: row.log_bytes });
    const body = await readBody(req, 16 * 1024 * 1024);
    const path = join(this.jobDir(row.id), 'log');
    const total = await this.exclusive(path, undefined, async () => {
      // Where the log stands now, not when the request came in: another post may have landed while
      // this body arrived (two posts of one chunk at once left its bytes past log_bytes on disk).
      const held = (await this.store.job(row.id))?.log_bytes ?? row.log_bytes;
      if (offset > held) throw new HttpError(409, 'E_OFFSET', `the hub holds ${held} log bytes`, { size: held });
      // A resend after a lost answer overlaps what is held: only the new bytes count.
      const fresh = body.subarray(held - offset);
      if (fresh.length === 0) return held;
      await mkdir(this.jobDir(row.id), { recursive: true, mode: 0o700 });
      const handle = await open(path, 'a', 0o600);
      try {
        // A crash between the write and the row's update leaves bytes past log_bytes: cut them.
        if ((await handle.stat()).size !== held) await handle.truncate(held);
        await handle.write(fresh, 0, fresh.length, held);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await this.store.update(row.id, { log_bytes: held + fresh.length });
      this.emit(`job:${row.id}`);
      return held + fresh.length;
    });
    send(res, 200, { logBytes: total });
  }

  private async sendLog(row: JobRow, url: URL, res: ServerResponse): Promise<void> {
    const offset = Number(url.searchParams.get('offset') ?? '0');
    if (!Number.isSafeInteger(offset) || offset < 0) throw new HttpError(400, 'E_USAGE', 'bad offset');
    // `state`: the one the client last saw; a change answers at once (its `started` event).
    const known = url.searchParams.get('state');
    const now = await this.waitFor(row.id, url, (r) => r === undefined || r.log_bytes > offset || FINAL.has(r.state) || (known !== null && r.state !== known));
    if (!now) throw new HttpError(404, 'E_NOJOB', `no job ${row.id}`);
    const length = Math.max(0, Math.min(now.log_bytes - offset, LOG_CHUNK));
    const headers = {
      'content-type': 'application/octet-stream',
      'content-length': String(length),
      'x-mint-job': JSON.stringify(await this.view(now)),
    };
    res.writeHead(200, headers);
    if (length === 0) {
      res.end();
      return;
    }
    await pipeline(createReadStream(join(this.jobDir(row.id), 'log'), { start: offset, end: offset + length - 1 }), res);
  }

  // ------------------------------------------------------------------------------------------------
  // Long-polls: a request waits for an event of its job or site, up to its `wait`.

  private waitMs(url: URL): number {
    const wait = Number(url.searchParams.get('wait') ?? '0');
    return Number.isFinite(wait) && wait > 0 ? Math.min(wait, this.maxWaitMs) : 0;
  }

  private async waitFor(id: string, url: URL, done: (row: JobRow | undefined) => boolean): Promise<JobRow | undefined> {
    const deadline = Date.now() + this.waitMs(url);
    for (;;) {
      const since = this.fired(`job:${id}`);
      const row = await this.store.job(id);
      if (done(row) || Date.now() >= deadline) return row;
      if (!(await this.wake(`job:${id}`, deadline - Date.now(), undefined, since))) return await this.store.job(id);
    }
  }

  /** How many times `event` has fired here: read before a store read, then given to `wake`. */
  private fired(event: string): number {
    return this.counts.get(event) ?? 0;
  }

  private fire(event: string): void {
    // Bounded: after a clear, a count reads as changed, which costs a waiter one extra read.
    if (this.counts.size > 10_000) this.counts.clear();
    this.counts.set(event, this.fired(event) + 1);
    this.bus.emit(event);
  }

  /**
   * Waits for `event` or `ms`; false when the client went away or the hub is closing. With `since`
   * (`fired(event)` before the caller's store read) it returns at once if the event fired during
   * that read: a read of PostgreSQL takes a round trip, in which a change and its event can land
   * before the listener below is in place.
   */
  private wake(event: string, ms: number, req?: IncomingMessage, since?: number): Promise<boolean> {
    if (since !== undefined && this.fired(event) !== since) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (value: boolean): void => {
        clearTimeout(timer);
        this.bus.off(event, onEvent);
        this.bus.off('closing', onClose);
        req?.socket.off('close', onClose);
        resolve(value);
      };
      const onEvent = (): void => finish(true);
      const onClose = (): void => finish(false);
      // A store shared with other hub processes is re-read now and then, in case an event was lost.
      const timer = setTimeout(() => finish(true), Math.max(0, Math.min(ms, this.store.recheckMs ?? ms)));
      this.bus.on(event, onEvent);
      this.bus.once('closing', onClose);
      req?.socket.once('close', onClose);
    });
  }
}

function checkStart(body: StartRequest): StartRequest {
  const args = Array.isArray(body.args) && body.args.every((a) => typeof a === 'string') ? body.args : undefined;
  if (!args) throw new HttpError(400, 'E_USAGE', 'args must be a list of strings');
  checkProgramArgs(args);
  const request = { ...(typeof body.program === 'string' ? { program: body.program } : {}), ...(body.env && typeof body.env === 'object' ? { env: body.env } : {}) };
  checkProgramRequest(request);
  if (request.env && Object.values(request.env).some((v) => typeof v !== 'string')) throw new HttpError(400, 'E_USAGE', 'env values are strings');
  // Resources are only checked for form here: the site's gateway holds them to its maxima (E_LIMIT).
  const resources = body.resources;
  if (resources !== undefined && (typeof resources !== 'object' || resources === null || Array.isArray(resources))) throw new HttpError(400, 'E_USAGE', 'resources is an object');
  checkResources(resources);
  return { args, ...request, ...(resources && Object.keys(resources).length > 0 ? { resources } : {}) };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        // Not req.destroy(): that took the socket and the 413 with it. fail() answers with
        // `connection: close`, which ends the connection once the answer is out.
        reject(new HttpError(413, 'E_TOOBIG', `a request body is at most ${max} bytes`));
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function readJson<T>(req: IncomingMessage): Promise<T> {
  const body = await readBody(req, MAX_JSON);
  try {
    const value: unknown = JSON.parse(body.toString('utf8') || '{}');
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return value as T;
  } catch {
    throw new HttpError(400, 'E_USAGE', 'the body is not a JSON object');
  }
}
