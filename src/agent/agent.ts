/**
 * The pull-mode agent (issue 18): runs on the external computer, opens no port, and reaches the hub
 * over outbound HTTPS only. It long-polls the hub for its site's jobs, so a job starts within a
 * second of submission, and runs each through the gateway script on this computer, exactly as sshd
 * would run it as the forced command (SSH_ORIGINAL_COMMAND set, the site's options as its argv):
 * the job dir, the export allow-list, the limits, the audit log and the scheduler support are the
 * gateway's own code in both modes. Inputs go in through the gateway's put (a local rsync whose
 * remote shell is src/assets/agent-rsh.mjs), the program starts with startx, the log is followed
 * with `logs JOB OFFSET` from the hub's own offset, the results come out through the gateway's get
 * (the export allow-list), and the job is removed (`rm`) only once the hub has acknowledged every
 * result: a hub that is down for hours finds them waiting. Every hub call is retried with backoff.
 */
import { spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { lstat, mkdir, readdir, readlink, rm, stat, chmod, utimes, open } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GATEWAY_SCRIPT, AGENT_RSH, PACKAGE_JSON } from '../assets/index.js';
import { ConfigError, MintSshError } from '../errors.js';
import { formatRequest, parseKeyValues, parseLogTrailer, parseRefusal, parseStatus, type JobStatus } from '../gateway/protocol.js';
import { HubHttp, type HubTarget } from '../pull/http.js';
import { API, badName, EMPTY_SHA256, hashFile, type AgentJob, type FileEntry, type SiteRefusal } from '../pull/wire.js';
import { RSYNC_CLIENT_OPTIONS } from '../transfer/rsync-args.js';

export interface AgentOptions {
  target: HubTarget;
  site: string;
  /** The gateway's options, as its authorized_keys line would give them (`--root DIR --program P ...`). */
  gatewayArgs: readonly string[];
  /** Where inputs and results wait on their way (default ROOT/.mint-agent). */
  spool: string;
  /** Longest long-poll asked of the hub. */
  pollMs?: number;
  log?: (line: string) => void;
  /** Called once the hub has this agent's facts and the jobs it held are resumed, as it starts polling. */
  onReady?: () => void;
  signal?: AbortSignal;
}

interface GatewayRun {
  stdout: Buffer;
  stderr: string;
  exitCode: number;
}

const BACKOFF_MAX_MS = 30_000;
/** A job whose work failed here is taken up again after this long. */
const RESUME_MS = 10_000;
/** How often the agent tells the hub its gateway's facts again (free space, load, the scheduler's queues). */
const INFO_EVERY_MS = 5 * 60_000;

export class Agent {
  private readonly http: HubHttp;
  private readonly options: AgentOptions;
  private readonly active = new Map<string, Promise<unknown>>();
  private readonly log: (line: string) => void;
  private readonly signal: AbortSignal;
  private infoAt = 0;

  constructor(options: AgentOptions) {
    this.options = options;
    this.http = new HubHttp(options.target);
    this.log = options.log ?? ((line) => process.stderr.write(`mint-ssh-exec agent: ${line}\n`));
    this.signal = options.signal ?? new AbortController().signal;
  }

  /** Polls until the signal aborts; resumes the jobs the hub says this site holds first. */
  async run(): Promise<void> {
    // A gateway that refuses its own options (no job root, a program that is not there) would fail
    // every job it is handed: the agent says so and stops before it claims any (fail closed).
    const first = await this.gatewayFacts();
    if (first instanceof Error) throw new ConfigError(`the gateway refuses this agent's site options: ${first.message}`, { hint: 'fix the gateway options given to the agent (mint-gateway doctor checks the same ones)' });
    await mkdir(this.options.spool, { recursive: true, mode: 0o700 });
    const resumed = await this.retry('resume', () => this.http.call<{ jobs: AgentJob[] }>('GET', `${API}/agent/jobs`));
    for (const job of resumed?.jobs ?? []) this.take(job);
    await this.reportInfo(first);
    this.options.onReady?.();
    while (!this.signal.aborted) {
      if (Date.now() - this.infoAt >= INFO_EVERY_MS) await this.reportInfo();
      const next = await this.retry('poll', () =>
        this.http.call<{ jobs: AgentJob[] }>('GET', `${API}/agent/next`, { query: { wait: this.options.pollMs ?? 25_000 }, signal: this.signal, idleMs: (this.options.pollMs ?? 25_000) + 30_000 }),
      );
      for (const job of next?.jobs ?? []) this.take(job);
    }
    await Promise.allSettled(this.active.values());
    this.http.close();
  }

  /**
   * Tells the hub this agent's version and its gateway's probe report, for `probe` on the MInt side.
   * One try: a hub that misses it hears it again at the next round; jobs never wait for it.
   */
  private async reportInfo(known?: Record<string, string> | Error): Promise<void> {
    this.infoAt = Date.now();
    try {
      const fields = known ?? (await this.gatewayFacts());
      if (fields instanceof Error) throw fields;
      await this.http.call('POST', `${API}/agent/info`, { json: { version: agentVersion(), fields }, signal: this.signal });
    } catch (error) {
      if (!this.signal.aborted) this.log(`could not tell the hub this site's facts (probe will not show them): ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** The gateway's probe report (`key=value` facts), or why it failed. */
  private async gatewayFacts(): Promise<Record<string, string> | Error> {
    const probe = await this.gateway('probe');
    if (probe.exitCode !== 0) {
      const refusal = parseRefusal(probe.stderr);
      return new Error(refusal ? `${refusal.gatewayCode}: ${refusal.message}` : `its probe failed (exit ${probe.exitCode}): ${probe.stderr.trim().slice(-300)}`);
    }
    return Object.fromEntries(parseKeyValues(probe.stdout.toString('utf8')));
  }

  private take(job: AgentJob): void {
    if (this.active.has(job.jobId)) {
      if (job.cancelRequested) void this.gateway('cancel', job.jobId).then(() => this.log(`job ${job.jobId}: cancelled`));
      return;
    }
    const id = job.jobId;
    const work = this.runJob(job).then(
      () => false,
      (error: unknown) => {
        this.log(`job ${id}: ${error instanceof Error ? error.message : String(error)}; trying it again in ${RESUME_MS / 1000} s`);
        return true;
      },
    );
    this.active.set(id, work);
    void work.then(async (failed) => {
      this.active.delete(id);
      if (!failed) return;
      // Never given up while the hub holds the job (it waited for ever, its client too): tried again
      // from where it stands, as a restarted agent would; a job the hub no longer has ends here.
      await new Promise((r) => setTimeout(r, RESUME_MS).unref());
      if (this.signal.aborted || this.active.has(id)) return;
      const fresh = await this.http.call<AgentJob>('GET', `${API}/agent/jobs/${id}`).catch(() => undefined);
      if (fresh && !this.active.has(id)) this.take(fresh);
    });
  }

  /** One job, from wherever it stands (a restarted agent, or hub, picks it up where it was). */
  private async runJob(job: AgentJob): Promise<void> {
    const id = job.jobId;
    let status = await this.status(id);
    if (!status && job.state !== 'queued') {
      // The hub saw it start, and the site has no such job (its dir removed, a sweep): it is lost,
      // and never started a second time.
      this.log(`job ${id}: the hub says ${job.state}, the site has no such job: reported lost`);
      await this.report(id, { state: 'lost' });
      await this.finishResults(id, []);
      return;
    }
    if (!status || status.state === 'created') {
      if (job.cancelRequested) {
        await this.report(id, { state: 'cancelled' });
        await this.finishResults(id, []);
        await this.gateway('rm', id);
        return;
      }
      const staged = await this.fetchInputs(job);
      if (staged.length > 0) {
        try {
          await this.rsync('put', id, [...staged, 'mint:work/']);
        } catch (error) {
          // Inputs over the site's limits (E_LIMIT): refused as the SSH method's upload is, never
          // retried for ever (the job hung claimed on the hub; conformance-pull.test.ts).
          if (error instanceof Refused) return this.refused(job, 'put', error.gatewayCode, error.message);
          throw error;
        }
      }
      const request = formatRequest({ args: job.args, ...(job.program !== undefined ? { program: job.program } : {}), ...(job.env ? { env: job.env } : {}), ...(job.resources ? { resources: job.resources } : {}) });
      const started = await this.gateway('startx', id, request);
      if (started.exitCode !== 0) {
        const refusal = parseRefusal(started.stderr);
        return this.refused(job, 'startx', refusal?.gatewayCode ?? 'E_INTERNAL', refusal?.message ?? (started.stderr.trim() || `exit ${started.exitCode}`));
      }
      status = parseStatus(started.stdout.toString('utf8'));
      this.log(`job ${id}: started (pid ${status.pid ?? '-'})`);
    }
    if (job.cancelRequested && (status.state === 'running' || status.state === 'queued')) await this.gateway('cancel', id);
    if (status.state === 'running' || status.state === 'queued') await this.report(id, { state: status.state, ...(status.pid ? { pid: status.pid } : {}) });
    const end = await this.followLog(id, job.logBytes);
    await this.report(id, { state: end.state, ...(end.exitCode !== undefined ? { exitCode: end.exitCode } : {}) });
    this.log(`job ${id}: ${end.state} ${end.exitCode ?? ''}`.trim());
    const out = join(this.options.spool, id, 'out');
    await mkdir(out, { recursive: true, mode: 0o700 });
    await this.rsync('get', id, ['mint::work/', `${out}/`]);
    await this.finishResults(id, await manifest(out));
    // Acknowledged by the hub: only now may the job leave this computer.
    await this.gateway('rm', id);
    await rm(join(this.options.spool, id), { recursive: true, force: true });
    this.log(`job ${id}: results delivered`);
  }

  /**
   * The gateway refused the job before its program ran: nothing of it stays here, and the hub
   * hears it last (its answer settles the job, results and all; after that a waitForSlot client may
   * queue it again, and this agent must no longer hold it as active). An agent that dies before
   * telling leaves the job claimed and unsettled: the next one resumes it and tries again.
   */
  private async refused(job: AgentJob, verb: 'put' | 'startx', gatewayCode: string, message: string): Promise<void> {
    const id = job.jobId;
    this.log(`job ${id}: the gateway refused '${verb}': ${gatewayCode}: ${message}`);
    await this.gateway('rm', id);
    await rm(join(this.options.spool, id), { recursive: true, force: true });
    await this.report(id, { state: 'lost', refusal: { verb, gatewayCode, message } });
  }

  private async status(id: string): Promise<JobStatus | undefined> {
    const r = await this.gateway('status', id);
    if (r.exitCode === 0) return parseStatus(r.stdout.toString('utf8'));
    if (parseRefusal(r.stderr)?.gatewayCode === 'E_NOJOB') return undefined;
    throw new Error(`status of job ${id}: ${r.stderr.trim()}`);
  }

  private async report(id: string, body: { state: string; pid?: number; exitCode?: number; refusal?: SiteRefusal }): Promise<void> {
    await this.retry(`report ${id}`, () => this.http.call('POST', `${API}/agent/jobs/${id}/state`, { json: body }), true);
  }

  // ---------------------------------------------------------------------------------------------
  // The gateway, run here as sshd would run it

  private gatewayArgv(): string[] {
    return [GATEWAY_SCRIPT, ...this.options.gatewayArgs];
  }

  /** One verb through the gateway (never a shell: the command is a validated gateway line). */
  gateway(verb: 'status' | 'startx' | 'cancel' | 'rm', id: string, stdin?: string): Promise<GatewayRun>;
  gateway(verb: 'probe'): Promise<GatewayRun>;
  gateway(verb: 'status' | 'startx' | 'cancel' | 'rm' | 'probe', id?: string, stdin?: string): Promise<GatewayRun> {
    return new Promise((resolvePromise, reject) => {
      const command = id === undefined ? `mint-gw ${verb}` : `mint-gw ${verb} ${id}`;
      const child = spawn('/bin/sh', this.gatewayArgv(), { env: { ...process.env, SSH_ORIGINAL_COMMAND: command }, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      let err = '';
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
      child.on('error', reject);
      child.on('close', (code) => resolvePromise({ stdout: Buffer.concat(out), stderr: err, exitCode: code ?? 255 }));
      // A gateway that refuses before it reads its request closes the pipe: EPIPE here is no error
      // of ours (its refusal is on stderr), and unhandled it killed the agent.
      child.stdin.on('error', () => undefined);
      child.stdin.end(stdin ?? '');
    });
  }

  private async rsync(verb: 'put' | 'get', id: string, paths: string[]): Promise<void> {
    const options = verb === 'put' ? RSYNC_CLIENT_OPTIONS.put : RSYNC_CLIENT_OPTIONS.get;
    // (Loaded when used: the package's one bundle carries the agent too, and every import paid for it.)
    const { execa } = await import('execa');
    const result = await execa('rsync', [...options, '-8', `--rsh=${process.execPath} ${AGENT_RSH}`, '--', ...paths], {
      env: { MINT_AGENT_GATEWAY: JSON.stringify(this.gatewayArgv()), MINT_AGENT_JOB: id, MINT_AGENT_VERB: verb, RSYNC_RSH: undefined, RSYNC_PROTECT_ARGS: undefined, RSYNC_OLD_ARGS: undefined },
      reject: false,
      stdin: 'ignore',
    });
    if (result.exitCode !== 0) {
      const refusal = parseRefusal(String(result.stderr));
      if (refusal) throw new Refused(refusal.gatewayCode, refusal.message);
      throw new Error(`${verb} of job ${id} failed (rsync ${result.exitCode}): ${String(result.stderr).trim().split('\n').slice(-2).join(' | ')}`);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Inputs from the hub, results to it

  /** Downloads the job's inputs into the spool (resuming what is there), each checked by SHA-256; returns the top-level paths. */
  private async fetchInputs(job: AgentJob): Promise<string[]> {
    const dir = join(this.options.spool, job.jobId, 'in');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tops = new Set<string>();
    for (const [idx, f] of job.inputs.entries()) {
      if (badName(f.name)) throw new Error(`input name ${JSON.stringify(f.name)} refused`);
      const path = resolve(dir, f.name);
      if (!path.startsWith(`${dir}${sep}`)) throw new Error(`input name ${JSON.stringify(f.name)} leaves the spool`);
      tops.add(join(dir, f.name.split('/')[0]!));
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      if (f.link !== undefined) continue; // inputs are sent with -L: links never arrive
      await this.retry(`input ${f.name}`, async () => {
        const held = await stat(path).then((s) => s.size, () => 0);
        let digest: string;
        if (held < f.size) {
          // Hashed as it arrives (after the held prefix, when resuming): one pass over the bytes
          // instead of a second read of the whole file (256 MiB: 0.85 s here under load).
          const hash = createHash('sha256');
          await hashInto(hash, path, held);
          const response = await this.http.stream('GET', `${API}/agent/jobs/${job.jobId}/inputs/${idx}`, { headers: { range: `bytes=${held}-` } });
          const tap = new Transform({
            transform(chunk: Buffer, _encoding, done) {
              hash.update(chunk);
              done(null, chunk);
            },
          });
          const handle = await open(path, 'a', 0o600);
          try {
            await pipeline(response, tap, createWriteStream('', { fd: handle.fd, autoClose: false }));
          } finally {
            await handle.close();
          }
          digest = hash.digest('hex');
        } else digest = await hashFile(path);
        if (digest !== f.sha256) {
          await rm(path, { force: true });
          throw new Error(`input ${f.name}: SHA-256 differs; fetching it again`);
        }
      }, true);
      await chmod(path, f.mode & 0o777);
      await utimes(path, f.mtimeMs / 1000, f.mtimeMs / 1000);
    }
    return [...tops];
  }

  /** The results' manifest, then each file's bytes from where the hub stands, then its commit (the acknowledgement). */
  private async finishResults(id: string, files: (FileEntry & { path?: string })[]): Promise<void> {
    const entries = files.map(({ path: _path, ...f }) => f);
    const { sizes } = (await this.retry(`results of ${id}`, () => this.http.call<{ sizes: number[] }>('PUT', `${API}/agent/jobs/${id}/results`, { json: { files: entries } }), true))!;
    for (const [idx, f] of files.entries()) {
      if (f.link !== undefined || !f.path) continue;
      let held = sizes[idx] ?? 0;
      while (held < f.size) {
        const from = held;
        const answer = await this.retry(`result ${f.name}`, async () => {
          const file = await open(f.path!, 'r');
          try {
            return await this.http.call<{ size: number }>('PUT', `${API}/agent/jobs/${id}/results/${idx}`, { query: { offset: from }, body: file.createReadStream({ start: from, autoClose: true }), idleMs: 120_000 });
          } catch (error) {
            // Where the hub stands after a failed or partial upload: resume from there.
            const now = await this.http.call<{ sizes: number[] }>('GET', `${API}/agent/jobs/${id}/results`).catch(() => undefined);
            if (now && (now.sizes[idx] ?? 0) > from) return { size: now.sizes[idx]! };
            throw error;
          }
        }, true);
        held = answer?.size ?? held;
      }
    }
    await this.retry(`commit of ${id}`, () => this.http.call('POST', `${API}/agent/jobs/${id}/results/commit`), true);
  }

  // ---------------------------------------------------------------------------------------------
  // The log, from the hub's offset, to the hub

  private followLog(id: string, offset: number): Promise<{ state: JobStatus['state']; exitCode: number | undefined }> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn('/bin/sh', this.gatewayArgv(), { env: { ...process.env, SSH_ORIGINAL_COMMAND: `mint-gw logs ${id} ${offset}` }, stdio: ['ignore', 'pipe', 'pipe'] });
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let sent = offset;
      let sending: Promise<void> | undefined;
      let stderr = '';
      // The gateway's reader waits on a full pipe: memory stays bounded while the hub is away.
      const flush = (): Promise<void> => {
        if (sending) return sending;
        sending = (async () => {
          while (pendingBytes > 0) {
            const chunk = Buffer.concat(pending);
            pending = [];
            pendingBytes = 0;
            await this.sendLog(id, sent, chunk);
            sent += chunk.length;
            child.stdout.resume();
          }
        })().finally(() => (sending = undefined));
        return sending;
      };
      child.stdout.on('data', (chunk: Buffer) => {
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes > 1024 * 1024) child.stdout.pause();
        void flush();
      });
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
      child.on('error', reject);
      child.on('close', () => {
        void (async () => {
          while (sending || pendingBytes > 0) await flush();
          const end = parseLogTrailer(stderr);
          if (!end) reject(new Error(`logs of job ${id}: ${parseRefusal(stderr)?.message ?? stderr.trim()}`));
          else resolvePromise(end);
        })().catch(reject);
      });
    });
  }

  private async sendLog(id: string, offset: number, chunk: Buffer): Promise<void> {
    await this.retry(`log of ${id}`, () => this.http.call('POST', `${API}/agent/jobs/${id}/log`, { query: { offset }, body: streamOf(chunk) }), true);
  }

  /**
   * A hub call until it works: backoff from 0.5 s to 30 s (a hub down for hours is waited for).
   * What retrying cannot cure (a refused token, a job the hub no longer has) ends the job's work;
   * for the poll loop (`must` false) it ends the agent.
   */
  private async retry<T>(what: string, fn: () => Promise<T>, must = false): Promise<T | undefined> {
    for (let attempt = 0; ; attempt += 1) {
      if (this.signal.aborted && !must) return undefined;
      try {
        return await fn();
      } catch (error) {
        if (this.signal.aborted && !must) return undefined;
        const retryable = !(error instanceof MintSshError) || error.retryable;
        if (!retryable) throw error;
        const delay = Math.min(BACKOFF_MAX_MS, 500 * 2 ** Math.min(attempt, 6));
        if (attempt === 0 || attempt % 10 === 0) this.log(`${what}: ${error instanceof Error ? error.message : String(error)}; retrying in ${delay} ms`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}

/** The gateway's refusal of a transfer (`mint-gw: error: E_X: ...`). */
class Refused extends Error {
  constructor(
    readonly gatewayCode: string,
    message: string,
  ) {
    super(message);
  }
}

/** Feeds the first `length` bytes of the file at `path` into `hash`. */
function hashInto(hash: Hash, path: string, length: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    if (length === 0) return resolvePromise();
    createReadStream(path, { start: 0, end: length - 1 })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolvePromise());
  });
}

function agentVersion(): string {
  try {
    return (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function streamOf(chunk: Buffer): Readable {
  return Readable.from([chunk]);
}

/** Every file and in-tree symlink under `dir` (what the gateway's get delivered), with sizes, modes, times and SHA-256s. */
export async function manifest(dir: string): Promise<(FileEntry & { path: string })[]> {
  const out: (FileEntry & { path: string })[] = [];
  const walk = async (sub: string): Promise<void> => {
    for (const entry of await readdir(sub, { withFileTypes: true })) {
      const path = join(sub, entry.name);
      const name = relative(dir, path).split(sep).join('/');
      if (name === '.mint-partial' || name.startsWith('.mint-partial/')) continue;
      const info = await lstat(path);
      if (info.isDirectory()) await walk(path);
      else if (info.isSymbolicLink()) out.push({ name, size: 0, sha256: EMPTY_SHA256, mode: 0o777, mtimeMs: info.mtimeMs, link: await readlink(path), path });
      else if (info.isFile()) out.push({ name, size: info.size, sha256: await hashFile(path), mode: info.mode & 0o777, mtimeMs: info.mtimeMs, path });
    }
  };
  await walk(dir);
  return out;
}
