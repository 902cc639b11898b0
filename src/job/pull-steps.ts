/**
 * The job's steps through a pull-mode hub (issue 18): the second implementation of JobSteps, beside
 * sshJobSteps. The same guarantees hold: every step is safe to repeat after a dropped link
 * (JobSession.step retries the hub's transient failures): inputs and results resume at the byte the
 * other side holds, each file is checked by SHA-256, the start is idempotent on the hub, the log
 * resumes at our offset, and removing a missing job succeeds.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, symlink, chmod, utimes } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { GatewayError, MintSshError, TransferError } from '../errors.js';
import type { JobListing, JobState, JobStatus } from '../gateway/protocol.js';
import type { ProgramRequest, TransferResult } from '../gateway/client.js';
import { readAll, type HubHttp } from '../pull/http.js';
import { API, badName, hashFile, type FileEntry, type HubJob } from '../pull/wire.js';
import type { Final, JobSteps, OnSched, TransferRun } from './steps.js';

const FINAL: ReadonlySet<JobState> = new Set(['exited', 'cancelled', 'lost']);
const POLL_MS = 25_000;

export function pullJobSteps(http: HubHttp, site: string): JobSteps {
  const host = http.target.name;
  const statusOf = (job: HubJob): JobStatus => ({ jobId: job.jobId, state: job.state, exitCode: job.exitCode, pid: job.pid, logBytes: job.logBytes });
  const create = (jobId: string): Promise<HubJob> => http.call<HubJob>('POST', `${API}/jobs/${jobId}`, { json: { site } });

  const start = async (jobId: string, args: readonly string[], request?: ProgramRequest): Promise<JobStatus> => {
    const existing = await http.call<HubJob>('GET', `${API}/jobs/${jobId}`).catch(() => undefined);
    if (!existing) await create(jobId);
    const job = await http.call<HubJob>('POST', `${API}/jobs/${jobId}/start`, {
      json: {
        args: [...args],
        ...(request?.program !== undefined ? { program: request.program } : {}),
        ...(request?.env ? { env: request.env } : {}),
        // Carried to the site's gateway, which holds them to its maxima (E_LIMIT) as over SSH.
        ...(request?.resources && Object.keys(request.resources).length > 0 ? { resources: request.resources } : {}),
      },
    });
    return statusOf(job);
  };

  /** Reads the log from `offset` until the job has ended and every byte is here; `onJob` hears each state. */
  const follow = async (jobId: string, offset: number, onChunk: (chunk: Buffer) => void, signal: AbortSignal | undefined, onJob?: (job: HubJob) => void, initial?: JobState): Promise<Final> => {
    // The state last seen: the hub answers as soon as it changes (queued -> running is the `started`
    // event), not only when log bytes arrive, so a program that prints nothing still starts on time.
    let known: JobState | undefined = initial;
    for (;;) {
      signal?.throwIfAborted();
      const response = await http.stream('GET', `${API}/jobs/${jobId}/log`, { query: { offset, wait: POLL_MS, state: known }, ...(signal ? { signal } : {}), idleMs: POLL_MS + 30_000 });
      const job = JSON.parse(String(response.headers['x-mint-job'] ?? '{}')) as HubJob;
      known = job.state;
      const body = await new Promise<Buffer>((resolvePromise, reject) => {
        const chunks: Buffer[] = [];
        response.on('data', (c: Buffer) => chunks.push(c));
        response.on('end', () => resolvePromise(Buffer.concat(chunks)));
        response.on('error', reject);
        response.on('aborted', () => reject(new TransferError('the hub cut the log short', { host, jobId }, true)));
      });
      onJob?.(job);
      if (body.length > 0) {
        onChunk(body);
        offset += body.length;
      }
      if (FINAL.has(job.state) && offset >= job.logBytes) {
        // Refused by the site before the program ran: the same error as the SSH method's.
        const refusal = job.state === 'lost' ? job.refusal : undefined;
        if (refusal) {
          throw new GatewayError('GATEWAY_REFUSED', `gateway refused '${refusal.verb}': ${refusal.gatewayCode}: ${refusal.message}`, { host, jobId, gatewayCode: refusal.gatewayCode });
        }
        return { state: job.state, exitCode: job.exitCode };
      }
    }
  };

  return {
    // The hub takes a job's inputs by themselves, before its start.
    inputsWithStart: false,
    async putInputs(jobId, inputs, options: TransferRun): Promise<TransferResult> {
      const t = performance.now();
      await create(jobId);
      const files = await collect(inputs);
      const { sizes } = await http.call<{ sizes: number[] }>('PUT', `${API}/jobs/${jobId}/inputs`, { json: { files: files.map(({ path: _p, ...f }) => f) } });
      const total = files.reduce((n, f) => n + f.size, 0);
      let done = sizes.reduce((n, s) => n + s, 0);
      for (const [idx, f] of files.entries()) {
        const held = sizes[idx] ?? 0;
        if (held >= f.size) continue;
        const handle = await open(f.path, 'r');
        const count = new Transform({
          transform(chunk: Buffer, _e, cb) {
            done += chunk.length;
            options.onProgress?.({ direction: 'put', bytes: done, percent: total ? Math.floor((done * 100) / total) : 100, rate: '', bytesPerSecond: undefined });
            cb(null, chunk);
          },
        });
        const source = handle.createReadStream({ start: held, autoClose: true });
        try {
          await http.call('PUT', `${API}/jobs/${jobId}/inputs/${idx}`, { query: { offset: held }, body: source.pipe(count), ...(options.signal ? { signal: options.signal } : {}), idleMs: 120_000 });
        } finally {
          // Also when the PUT failed (a cut link): the file was left open to the garbage collector.
          source.destroy();
        }
        options.onFile?.(f.name);
      }
      return { files: files.map((f) => f.name), skipped: [], durationMs: performance.now() - t, removed: false };
    },

    start,

    async startAndFollow(jobId, args, onStarted, onChunk, signal, request, _onSched?: OnSched): Promise<Final> {
      const first = await start(jobId, args, request);
      let told = false;
      const tell = (state: JobState, pid: number | undefined): void => {
        if (told) return;
        told = true;
        onStarted({ state, pid });
      };
      if (first.state === 'running') tell('running', first.pid);
      // A job the site refused before it ran throws the SSH start's GatewayError (follow: job.refusal).
      return await follow(
        jobId,
        0,
        onChunk,
        signal,
        (job) => {
          if (job.state === 'running' || (FINAL.has(job.state) && job.startedAt !== undefined)) tell('running', job.pid);
        },
        first.state,
      );
    },

    followLog: (jobId, offset, onChunk, signal) => follow(jobId, offset, onChunk, signal),

    status: async (jobId) => statusOf(await http.call<HubJob>('GET', `${API}/jobs/${jobId}`)),

    async cancel(jobId, onDelivered): Promise<JobStatus> {
      let job = await http.call<HubJob>('POST', `${API}/jobs/${jobId}/cancel`);
      onDelivered?.();
      // As the gateway's cancel does, answer once the program has ended (the caller's deadline bounds the wait).
      while (!FINAL.has(job.state)) {
        const response = await http.stream('GET', `${API}/jobs/${jobId}/log`, { query: { offset: job.logBytes, wait: POLL_MS }, idleMs: POLL_MS + 30_000 });
        job = JSON.parse(String(response.headers['x-mint-job'] ?? '{}')) as HubJob;
        await readAll(response, 2 * 1024 * 1024);
      }
      return statusOf(job);
    },

    async fetchResults(jobId, outputDir, options): Promise<TransferResult> {
      const t = performance.now();
      let answer: { job: HubJob; files: (FileEntry & { idx: number })[] };
      do answer = await http.call('GET', `${API}/jobs/${jobId}/results`, { query: { wait: POLL_MS }, ...(options.signal ? { signal: options.signal } : {}), idleMs: POLL_MS + 30_000 });
      while (!answer.job.resultsReady && !(answer.job.state === 'cancelled' && answer.job.startedAt === undefined));
      const root = resolve(outputDir);
      const partial = join(root, '.mint-partial');
      const names: string[] = [];
      const skipped: string[] = [];
      const total = answer.files.reduce((n, f) => n + f.size, 0);
      let done = 0;
      for (const f of answer.files) {
        const target = resolve(root, f.name);
        if (badName(f.name) || !target.startsWith(`${root}${sep}`)) throw new TransferError(`the hub sent a result named ${JSON.stringify(f.name)}, outside the output dir`, { host, jobId });
        await mkdir(dirname(target), { recursive: true });
        if (f.link !== undefined) {
          // As rsync --safe-links: a link that leaves the output is never made here.
          const to = resolve(dirname(target), f.link);
          if (f.link.startsWith('/') || !(to === root || to.startsWith(`${root}${sep}`))) {
            skipped.push(`${f.name} -> ${f.link}`);
            continue;
          }
          await rm(target, { force: true });
          await symlink(f.link, target);
        } else {
          await mkdir(partial, { recursive: true });
          const part = join(partial, String(f.idx));
          const held = await stat(part).then((s) => s.size, () => 0);
          if (held < f.size) {
            const response: IncomingMessage = await http.stream('GET', `${API}/jobs/${jobId}/results/${f.idx}`, { headers: { range: `bytes=${held}-` }, ...(options.signal ? { signal: options.signal } : {}) });
            const handle = await open(part, 'a', 0o600);
            try {
              await pipeline(response, createWriteStream('', { fd: handle.fd, autoClose: false }));
            } catch (error) {
              // A link cut mid-file ('aborted', ECONNRESET): what arrived stays, the retry resumes from it.
              if (error instanceof MintSshError) throw error;
              throw new TransferError(`result ${f.name}: the download broke off (${(error as Error).message})`, { host, jobId, cause: error }, true);
            } finally {
              await handle.close();
            }
          }
          if ((await hashFile(part)) !== f.sha256) {
            await rm(part, { force: true });
            throw new TransferError(`result ${f.name}: SHA-256 differs from the hub's; it is fetched again`, { host, jobId }, true);
          }
          // Never a set-id bit (as the SSH download's --chmod=ug-s).
          await chmod(part, f.mode & 0o777);
          await utimes(part, f.mtimeMs / 1000, f.mtimeMs / 1000);
          await rename(part, target);
        }
        done += f.size;
        options.onProgress?.({ direction: 'get', bytes: done, percent: total ? Math.floor((done * 100) / total) : 100, rate: '', bytesPerSecond: undefined });
        names.push(f.name);
        options.onFile?.(f.name);
      }
      await rm(partial, { recursive: true, force: true });
      let removed = false;
      if (options.remove) {
        await http.call('DELETE', `${API}/jobs/${jobId}`);
        removed = true;
      }
      return { files: names, skipped, durationMs: performance.now() - t, removed };
    },

    async remove(jobId): Promise<void> {
      await http.call('DELETE', `${API}/jobs/${jobId}`).catch((error: unknown) => {
        if (error instanceof GatewayError && error.gatewayCode === 'E_NOJOB') return;
        throw error;
      });
    },

    async list(): Promise<JobListing[]> {
      const { jobs } = await http.call<{ jobs: HubJob[] }>('GET', `${API}/jobs`, { query: { site } });
      return jobs.map((j) => ({ jobId: j.jobId, state: j.state, exitCode: j.exitCode }));
    },
  };
}

/** The inputs as files: each input's own name at the top, directories walked, symlinks followed (as rsync -L). */
async function collect(inputs: readonly string[]): Promise<(FileEntry & { path: string })[]> {
  const out: (FileEntry & { path: string })[] = [];
  const add = async (path: string, name: string): Promise<void> => {
    const info = await stat(path);
    if (info.isDirectory()) {
      for (const entry of await readdir(path)) await add(join(path, entry), `${name}/${entry}`);
    } else if (info.isFile()) {
      out.push({ name, size: info.size, sha256: await hashFile(path), mode: info.mode & 0o777, mtimeMs: info.mtimeMs, path });
    }
  };
  for (const input of inputs) await add(input, basename(input));
  return out;
}
