/**
 * A job's hold on its host: one SSH connection (and its rsync bridge), reopened when the network
 * drops it. Failure is the rule, not the exception: every step runs through `step()`, which retries
 * transport failures with jittered exponential backoff and never retries what retrying cannot
 * cure (authentication, host keys, gateway refusals).
 */
import pRetry, { AbortError } from 'p-retry';
import { CancelledError, ConnectError, MintSshError, type Step } from '../errors.js';
import type { ResolveOptions } from '../config/resolve-host.js';
import { resolveJump } from '../config/resolve-host.js';
import type { ResolvedHost } from '../config/resolved-host.js';
import { connect, type Connection } from '../connection/connect.js';
import { issueJobCredential, SHORT_CERTIFICATE_MS } from '../connection/cert-authority.js';
import { defaultPool, type ConnectionPool, type Lease } from '../transfer/pool.js';
import type { RshBridge } from '../transfer/rsh-bridge.js';
import { GatewayClient } from '../gateway/client.js';
import type { EventListener } from './events.js';
import { sshJobSteps, type JobSteps } from './steps.js';
import { pullJobSteps } from './pull-steps.js';
import { HubHttp, readCa, readToken } from '../pull/http.js';

export interface Link {
  /** The SSH connection; none in pull mode, where the steps go to a hub over HTTPS. */
  connection?: Connection;
  /** The job's steps over this link: the SSH gateway's, or a pull-mode hub's. */
  steps: JobSteps;
  bridge?: RshBridge;
  lease?: Lease;
  /** Lets the link go (a hub link's HTTPS connections). */
  close?: () => void;
}

export class JobSession {
  readonly host: ResolvedHost;
  private readonly resolveOptions: ResolveOptions;
  private readonly emit: EventListener;
  private readonly signal: AbortSignal | undefined;
  private link: Link | undefined;
  private connects = 0;
  private reachedFlag = false;
  private readonly pool: ConnectionPool;
  /** Connections opened over the job's life (1 unless the network failed). */
  get connections(): number {
    return this.connects;
  }

  constructor(host: ResolvedHost, resolveOptions: ResolveOptions, emit: EventListener, signal?: AbortSignal, pool: ConnectionPool = defaultPool) {
    this.pool = pool;
    this.host = host;
    this.resolveOptions = resolveOptions;
    this.emit = emit;
    this.signal = signal;
  }

  /** A connection to the host was made at least once: before that, nothing of the job can exist there. */
  get reached(): boolean {
    return this.reachedFlag;
  }

  /**
   * The live link: a place on a pooled connection, a new one when there is none or it died. A new
   * connection is abandoned when `signal` aborts (the step's; by default the session's).
   */
  async open(signal: AbortSignal | undefined = this.signal): Promise<Link> {
    if (this.link && !this.link.connection?.closed) return this.link;
    await this.drop();
    this.connects += 1;
    this.emit({ type: 'connecting', host: this.host.name, attempt: this.connects });
    const t = performance.now();
    if (this.host.pull) {
      // Pull mode: the steps go to the hub; each request opens (or reuses) its own HTTPS connection.
      const pull = this.host.pull;
      const what = `host ${this.host.name}`;
      const http = new HubHttp({ hub: pull.hub, token: readToken(pull.tokenFile, what), name: this.host.name, ...(pull.ca ? { ca: readCa(pull.ca, what) ?? '' } : {}) });
      this.reachedFlag = true;
      this.link = { steps: pullJobSteps(http, pull.site), close: () => http.close() };
      this.emit({ type: 'connected', host: this.host.name, ms: performance.now() - t });
      return this.link;
    }
    const lease = await this.pool.acquire(this.host, () => openConnection(this.host, this.resolveOptions, signal));
    this.reachedFlag = true;
    this.link = { connection: lease.connection, steps: sshJobSteps(new GatewayClient(lease.connection, lease.bridge)), bridge: lease.bridge, lease };
    this.emit({ type: 'connected', host: this.host.name, ms: performance.now() - t });
    return this.link;
  }

  /**
   * Runs one step of the job, reconnecting and retrying it after transport failures. The step
   * must be safe to repeat (each of ours is: resumable rsync, idempotent start guarded by status,
   * log offsets, rm of a missing job succeeds).
   *
   * `signal` cancels this step; without one the step is not cancellable. (No default to the
   * session's signal: the steps that run after a cancel, sending `cancel` and reading the rest of
   * the log, pass undefined exactly because that signal has already fired.)
   *
   * `limits.deadline` ends the step when it aborts, whatever the step is waiting for (a reply on a
   * connection that hangs, a handshake): the step's promise rejects with its reason at once and what
   * was under way is left to end on its own. `limits.once` makes one attempt, no retries: the
   * wind-down after a cancel, which must not spend seconds retrying against a dead host.
   */
  async step<T>(
    name: Step,
    fn: (link: Link, attempt: number) => Promise<T>,
    signal?: AbortSignal,
    limits: { deadline?: AbortSignal; once?: boolean } = {},
  ): Promise<T> {
    const run = this.retried(name, fn, signal, limits.once ?? false);
    const deadline = limits.deadline;
    if (!deadline) return run;
    return new Promise<T>((resolve, reject) => {
      const onDeadline = (): void => reject(abortReason(deadline, name));
      if (deadline.aborted) onDeadline();
      else deadline.addEventListener('abort', onDeadline, { once: true });
      run.then(resolve, reject).finally(() => deadline.removeEventListener('abort', onDeadline));
    });
  }

  private retried<T>(name: Step, fn: (link: Link, attempt: number) => Promise<T>, signal: AbortSignal | undefined, once: boolean): Promise<T> {
    const policy = this.host.retry;
    return pRetry(
      async (attempt) => {
        if (signal?.aborted) throw new AbortError(abortReason(signal, name));
        const link = await this.open(signal ?? this.signal);
        try {
          return await fn(link, attempt);
        } catch (error) {
          // A failure seen on a connection that has since died is the connection's failure.
          if (link.connection?.closed && !(error instanceof ConnectError) && !(error instanceof CancelledError)) {
            throw new ConnectError('CONNECTION_LOST', `connection to ${this.host.name} lost during ${name}: ${(error as Error).message}`, {
              host: this.host.name,
              step: name,
              cause: error,
            });
          }
          throw error;
        }
      },
      {
        retries: once ? 0 : policy.retries,
        maxRetryTime: policy.maxRetryTimeMs,
        // Backoff is ours (below), so the delay reported in the event is the one really waited.
        minTimeout: 0,
        maxTimeout: 0,
        ...(signal ? { signal } : {}),
        shouldRetry: ({ error }) => isTransient(error),
        onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
          if (error instanceof MintSshError) error.step ??= name;
          if (!isTransient(error) || retriesLeft === 0) return;
          await this.drop();
          // Equal jitter (half fixed, half random): spreads reconnects of many jobs so a site's
          // sshd is not hit by a storm.
          const ceiling = Math.min(policy.maxTimeoutMs, policy.minTimeoutMs * 2 ** (attemptNumber - 1));
          const delayMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
          this.emit({ type: 'retrying', step: name, attempt: attemptNumber + 1, delayMs, error });
          await sleep(delayMs, signal);
        },
      },
    ).catch((error: unknown) => {
      if (error instanceof AbortError) throw error.originalError;
      throw error;
    });
  }

  /** Lets go of the current connection (if any); the next step takes a place on a live one. */
  async drop(): Promise<void> {
    const link = this.link;
    this.link = undefined;
    link?.lease?.release();
    link?.close?.();
  }
}
/** A connection with the package's resolution rules (ProxyJump hops resolved like any host). */
export async function openConnection(
  host: ResolvedHost,
  resolveOptions: ResolveOptions,
  signal?: AbortSignal,
  onServerIdent?: (ident: string) => void,
): Promise<Connection> {
  // `certificate: per-job` outside a job (probe, jobs, cancel): a short certificate for this connection.
  if (host.perJobCertificate && !host.jobCredential) {
    host = { ...host, jobCredential: await issueJobCredential(host, { purpose: 'connection', lifetimeMs: SHORT_CERTIFICATE_MS }) };
  }
  return connect(host, {
    ...(signal ? { signal } : {}),
    ...(onServerIdent ? { onServerIdent } : {}),
    resolveJump: (spec) => resolveJump(spec, resolveOptions),
  });
}

export function isTransient(error: unknown): boolean {
  return error instanceof MintSshError && error.retryable;
}

function abortReason(signal: AbortSignal, step: Step): Error {
  return signal.reason instanceof MintSshError ? signal.reason : new CancelledError(`cancelled during ${step}`, { step });
}

/** Sleeps for `ms`, or less: it ends as soon as `signal` aborts (the caller then looks at it). */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  // An abort before the call would never fire the listener: the whole wait would be slept.
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
