/**
 * `probe`: checks a host step by step, the way a site admin debugs a first connection, and reports
 * what a scheduler would need to pick it (the grid information service idea): CPUs, memory, load,
 * free disk, round-trip time.
 */
import { lookup } from 'node:dns/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { isIP } from 'node:net';
import { ConnectError, MintSshError } from '../errors.js';
import { defaultProfilesPath } from '../config/load-profiles.js';
import { nameOrigin, resolveHost, type InlineHost, type NameOrigin, type ResolveOptions } from '../config/resolve-host.js';
import type { ResolvedHost } from '../config/resolved-host.js';
import { openTcp } from '../connection/open-socket.js';
import { checkCertificate, parseCertificate } from '../connection/certificate.js';
import { readFileSync } from 'node:fs';
import { openConnection } from '../job/job-session.js';
import { GatewayClient } from '../gateway/client.js';
import { execCollect } from '../connection/exec.js';
import { PROTOCOL_VERSION } from '../gateway/protocol.js';
import { probePull } from './pull-probe.js';

export type ProbeStepName =
  | 'config'
  | 'reach'
  | 'banner'
  | 'host-key'
  | 'auth'
  | 'gateway'
  | 'rsync-local'
  | 'rsync-remote'
  | 'program'
  | 'job-root'
  | 'resources'
  | 'latency'
  // Pull mode (a hub between MInt and the site): the hub's TLS identity, the site, the site's agent.
  | 'tls'
  | 'site'
  | 'agent';

export interface ProbeStep {
  step: ProbeStepName;
  ok: boolean;
  /** Only for steps that pass with a caution (e.g. slow login shell). */
  warning?: string;
  detail: string;
  hint?: string;
  errorCode?: string;
}

export interface ProbeResult {
  host: string;
  ok: boolean;
  steps: ProbeStep[];
  /** What a scheduler needs to choose this host. */
  resources?: { cpus?: number; memTotalMb?: number; memAvailableMb?: number; load?: number[]; freeMb?: number };
  /** verbRoundTripMs: a gateway verb over SSH; in pull mode a request to the hub (sshConnectMs absent, tlsConnectMs present). */
  latency?: { tcpConnectMs?: number; sshConnectMs?: number; tlsConnectMs?: number; verbRoundTripMs: number };
  /** Pull mode: what the hub has seen of the site's agent (ms ago, by the hub's clock). */
  agent?: { connected: boolean; lastSeenMs: number; version?: string; reportedMs?: number };
  /** A `--scheduler` site's batch scheduler, as its gateway sees it (the grid information service's facts). */
  scheduler?: SchedulerFacts;
  gateway?: { protocol: number; version: string };
}

export interface SchedulerFacts {
  /** slurm, sge or pbs. */
  type: string;
  /** What the scheduler says of itself (`slurm 22.05.8`, `SGE 8.1.9`), when it answered. */
  version?: string;
  /** Partitions (Slurm: idle/total nodes) or queues (Grid Engine: free/total slots; PBS: names only). */
  queues: Array<{ name: string; idle?: number; total?: number }>;
  /** Whether the scheduler answered the gateway's poll of this account's jobs. */
  reachable: boolean;
  /** This account's jobs the scheduler holds (PBS: those of this gateway's job root). */
  jobs?: { queued: number; running: number };
  /** The site's maxima for a job's resources (absent: no maximum). */
  maxima: { cpus?: number; memoryMb?: number; walltimeMin?: number };
}

/** The scheduler lines of a gateway's probe report (`scheduler=`, `sched_*`, `max_*`); undefined without one. */
export function schedulerFacts(f: Map<string, string>): SchedulerFacts | undefined {
  const type = f.get('scheduler');
  if (!type || type === 'none') return undefined;
  const positive = (key: string): number | undefined => {
    const n = numberOf(f.get(key));
    return n !== undefined && n > 0 ? n : undefined;
  };
  const count = (v: string): number | undefined => (/^\d+$/.test(v) ? Number(v) : undefined);
  const queues = (f.get('sched_queues') ?? '')
    .split(',')
    .filter(Boolean)
    .map((q) => {
      const [name = '', counts = ''] = q.split(':');
      const [idle = '', total = ''] = counts.split('/');
      const i = count(idle);
      const t = count(total);
      return { name, ...(i !== undefined ? { idle: i } : {}), ...(t !== undefined ? { total: t } : {}) };
    });
  const version = f.get('sched_version');
  const queued = count(f.get('sched_jobs_queued') ?? '');
  const running = count(f.get('sched_jobs_running') ?? '');
  const maxCpus = positive('max_cpus');
  const maxMemoryMb = positive('max_memory_mb');
  const maxWalltimeMin = positive('max_walltime_min');
  return {
    type,
    ...(version && version !== 'unknown' ? { version } : {}),
    queues,
    reachable: f.get('sched_reachable') === 'yes',
    ...(queued !== undefined && running !== undefined ? { jobs: { queued, running } } : {}),
    maxima: { ...(maxCpus ? { cpus: maxCpus } : {}), ...(maxMemoryMb ? { memoryMb: maxMemoryMb } : {}), ...(maxWalltimeMin ? { walltimeMin: maxWalltimeMin } : {}) },
  };
}

/** One line for people: `slurm 22.05.8; debug 1/1 idle; this account 0 queued, 1 running; at most 32 CPUs`. */
export function describeScheduler(s: SchedulerFacts): string {
  const unit = s.type === 'slurm' ? 'nodes idle' : s.type === 'sge' ? 'slots free' : '';
  const queues = s.queues.map((q) => (q.idle !== undefined && q.total !== undefined ? `${q.name} ${q.idle}/${q.total}` : q.name)).join(', ');
  const maxima = [
    s.maxima.cpus ? `${s.maxima.cpus} CPUs` : '',
    s.maxima.memoryMb ? `${s.maxima.memoryMb} MB` : '',
    s.maxima.walltimeMin ? `${s.maxima.walltimeMin} min` : '',
  ].filter(Boolean);
  return [
    `${s.type} (${s.version ?? 'version unknown'})`,
    queues ? `${queues}${unit && s.queues.some((q) => q.total !== undefined) ? ` ${unit}` : ''}` : 'no queues listed',
    s.jobs ? `this account ${s.jobs.queued} queued, ${s.jobs.running} running` : s.reachable ? '' : 'the scheduler did not answer',
    maxima.length ? `a job at most ${maxima.join(', ')}` : '',
  ]
    .filter(Boolean)
    .join('; ');
}

/** Exit code of the CLI for the first failing step: each step its own code. */
export const PROBE_EXIT: Record<ProbeStepName, number> = {
  config: 10,
  reach: 11,
  banner: 12,
  'host-key': 13,
  auth: 14,
  gateway: 15,
  'rsync-local': 16,
  'rsync-remote': 17,
  program: 18,
  'job-root': 19,
  resources: 20,
  latency: 21,
  tls: 22,
  site: 23,
  agent: 24,
};

const run = promisify(execFile);

export async function probeHost(target: string | InlineHost, options: ResolveOptions = {}): Promise<ProbeResult> {
  const label = typeof target === 'string' ? target : (target.name ?? target.hostname ?? 'host');
  const steps: ProbeStep[] = [];
  const result: ProbeResult = { host: label, ok: false, steps };
  const fail = (step: ProbeStepName, error: unknown): ProbeResult => {
    const e = error instanceof MintSshError ? error : undefined;
    steps.push({
      step,
      ok: false,
      detail: (e ? e.message.split('\n')[0] : (error as Error).message) ?? String(error),
      ...(e?.hint ? { hint: e.hint } : {}),
      ...(e ? { errorCode: e.code } : {}),
    });
    return result;
  };

  let host: ResolvedHost;
  // Set when HOST named no profile and no ~/.ssh/config alias: it is then tried as a host name, and
  // a name that does not resolve is most likely a mistyped profile (it used to pass as `[ ok ] config`).
  let unknownName: NameOrigin | undefined;
  try {
    host = await resolveHost(target, options);
    const origin = typeof target === 'string' ? await nameOrigin(target, options) : undefined;
    if (origin && !origin.profile && !origin.sshAlias) unknownName = origin;
    steps.push({
      step: 'config',
      ok: true,
      detail: host.pull
        ? `pull mode: hub ${host.pull.hub}, site ${host.pull.site}, submit token from ${host.pull.tokenFile}${host.pull.ca ? `, hub CA ${host.pull.ca}` : ''}`
        : `${host.user}@${host.hostname}:${host.port}${via(host)}${readBy(host)}`,
      ...certificateWarning(host),
      ...(unknownName ? { warning: `no profile or ~/.ssh/config alias is named "${label}": trying ${label} as a host name` } : {}),
    });
  } catch (error) {
    return fail('config', error);
  }
  if (host.pull) return probePull(host, host.pull, result, fail);

  let tcpConnectMs: number | undefined;
  if (!host.proxyCommand && !host.proxyJump) {
    try {
      const address = isIP(host.hostname) ? host.hostname : (await lookup(host.hostname)).address;
      const t = performance.now();
      const socket = await openTcp({ host: address, port: host.port, timeoutMs: host.connectTimeoutMs, label });
      tcpConnectMs = performance.now() - t;
      socket.destroy();
      steps.push({ step: 'reach', ok: true, detail: `${host.hostname} is ${address}; TCP port ${host.port} open (${tcpConnectMs.toFixed(1)} ms)` });
    } catch (error) {
      if (error instanceof MintSshError) return fail('reach', error);
      const profiles = unknownName?.profiles ?? [];
      const hint = unknownName
        ? `"${label}" is neither a profile nor an ~/.ssh/config alias, and no host has that name: a typo? ${profiles.length ? `the profiles are: ${profiles.join(', ')}` : `no profiles are defined (${options.configFile ?? defaultProfilesPath()})`}`
        : `check the host name "${host.hostname}": HostName in the profile or ~/.ssh/config`;
      return fail('reach', new ConnectError('HOST_UNREACHABLE', `cannot resolve host name ${host.hostname} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, { host: label, cause: error, hint }, false));
    }
  } else {
    steps.push({ step: 'reach', ok: true, detail: `through ${host.proxyJump ? `ProxyJump ${host.proxyJump}` : `ProxyCommand ${host.proxyCommand}`} (checked by the SSH step)` });
  }

  const t0 = performance.now();
  let connection;
  let ident: string | undefined;
  try {
    connection = await openConnection(host, options, undefined, (i) => (ident = i));
  } catch (error) {
    const code = error instanceof MintSshError ? error.code : '';
    if (ident) steps.push({ step: 'banner', ok: true, detail: ident });
    if (code === 'AUTH_FAILED') steps.push({ step: 'host-key', ok: true, detail: 'host key verified' });
    const step: ProbeStepName = code.startsWith('HOST_KEY') ? 'host-key' : code === 'AUTH_FAILED' ? 'auth' : 'banner';
    return fail(step, error);
  }
  const sshConnectMs = performance.now() - t0;
  try {
    steps.push({ step: 'banner', ok: true, detail: ident ?? 'SSH server answered' });
    steps.push({
      step: 'host-key',
      ok: true,
      detail: connection.hostKeyRecorded
        ? `host key recorded (first contact, accept-new) in ${host.knownHostsFiles[0] ?? 'known_hosts'}: compare its fingerprint with the site's`
        : `host key verified${host.hostKeyFingerprints.length ? ' against the pinned fingerprint' : ' against known_hosts'}`,
    });
    steps.push({ step: 'auth', ok: true, detail: `authenticated as ${host.user} (SSH connect ${sshConnectMs.toFixed(0)} ms)` });
    const gateway = new GatewayClient(connection);
    let report;
    try {
      report = await gateway.probe();
    } catch (error) {
      return fail('gateway', error);
    }
    const f = report.fields;
    result.gateway = { protocol: report.protocol, version: report.version };
    steps.push({
      step: 'gateway',
      ok: true,
      detail: `mint gateway ${report.version}, protocol ${report.protocol} (client speaks ${PROTOCOL_VERSION})`,
    });

    try {
      const { stdout } = await run('rsync', ['--version']);
      steps.push({ step: 'rsync-local', ok: true, detail: stdout.split('\n')[0]?.trim() ?? 'rsync' });
    } catch {
      return fail('rsync-local', new Error('rsync is not installed on this (MInt) side: apt-get install rsync'));
    }

    if (!siteSteps(f, steps, result)) return result;

    // Each verb is a fresh session through the account's login shell: its start-up dominates.
    const rounds: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await execCollect(connection, 'mint-gw list');
      rounds.push(performance.now() - t);
    }
    const verbRoundTripMs = Math.min(...rounds);
    result.latency = { ...(tcpConnectMs !== undefined ? { tcpConnectMs } : {}), sshConnectMs, verbRoundTripMs };
    const slowShell = verbRoundTripMs > 50 && (tcpConnectMs ?? 0) < verbRoundTripMs / 4;
    steps.push({
      step: 'latency',
      ok: true,
      detail: `verb round trip ${verbRoundTripMs.toFixed(1)} ms${tcpConnectMs !== undefined ? `, TCP connect ${tcpConnectMs.toFixed(1)} ms` : ''}`,
      ...(slowShell
        ? { warning: 'each verb spends most of its time in the account\'s login shell start-up (e.g. ~/.bashrc); give the MInt account /bin/sh as its shell (chsh -s /bin/sh)' }
        : {}),
    });
    result.ok = steps.every((s) => s.ok);
    return result;
  } finally {
    connection.close();
  }
}

/**
 * The steps read from a gateway's probe report (`key=value` facts): the site's rsync, program, job
 * root, resources and scheduler. The same for an SSH host (its gateway answered just now) and a pull
 * host (its agent's gateway answered at the agent's last report). False at the first failing step.
 */
export function siteSteps(f: Map<string, string>, steps: ProbeStep[], result: ProbeResult): boolean {
  const remoteRsync = f.get('rsync');
  if (!remoteRsync || remoteRsync === 'missing') {
    steps.push({ step: 'rsync-remote', ok: false, detail: 'rsync is not installed on the external computer', hint: 'the site must install rsync (apt-get install rsync / dnf install rsync)' });
    return false;
  }
  const confined = f.get('confine_root') === 'yes';
  // Downloads run rsync's daemon mode on a staging tree (rsync >= 3.1.0 on the site); uploads add
  // --confine-root where the site's rsync has it (>= 3.5.0).
  if (f.get('rsync_downloads') === 'no') {
    steps.push({
      step: 'rsync-remote',
      ok: false,
      detail: `rsync ${remoteRsync} on the external computer is older than 3.1.0, so the gateway refuses downloads`,
      hint: 'upgrade rsync there to >= 3.1.0 (RHEL 8 ships 3.1.3), or name a newer one with mint-gateway install --rsync PATH',
    });
    return false;
  }
  steps.push({ step: 'rsync-remote', ok: true, detail: `rsync ${remoteRsync}${confined ? ' (with --confine-root)' : ''}` });

  if (f.get('program_ok') !== 'yes') {
    steps.push({ step: 'program', ok: false, detail: `program ${f.get('program') ?? '?'} is missing or not executable`, hint: 'on the external computer: chmod +x it, or fix --program in authorized_keys' });
    return false;
  }
  if (f.get('setsid') !== 'yes') {
    steps.push({ step: 'program', ok: false, detail: 'setsid is missing on the external computer', hint: 'install util-linux there' });
    return false;
  }
  const named = f.get('programs');
  const allowEnv = f.get('allow_env');
  steps.push({
    step: 'program',
    ok: true,
    detail: `${f.get('program')} is executable${named ? `; named programs: ${named.split(',').join(', ')}` : ''}${allowEnv ? `; a client may set ${allowEnv.split(',').join(', ')}` : ''}`,
  });

  if (f.get('root_writable') !== 'yes') {
    steps.push({ step: 'job-root', ok: false, detail: `job root ${f.get('root')} is not writable`, hint: 'on the external computer: mkdir -m 700 the root, owned by the MInt account' });
    return false;
  }
  const freeMb = numberOf(f.get('free_mb'));
  const minFree = numberOf(f.get('min_free_mb')) ?? 0;
  steps.push({
    step: 'job-root',
    ok: freeMb === undefined || freeMb >= minFree,
    detail: `${f.get('root')} writable, ${freeMb ?? '?'} MB free${minFree ? ` (site minimum ${minFree} MB)` : ''}`,
  });

  const load = (f.get('load') ?? '').split(' ').map(Number).filter((n) => Number.isFinite(n));
  const resources = {
    ...(numberOf(f.get('cpus')) !== undefined ? { cpus: numberOf(f.get('cpus'))! } : {}),
    ...(numberOf(f.get('mem_total_kb')) !== undefined ? { memTotalMb: Math.round(numberOf(f.get('mem_total_kb'))! / 1024) } : {}),
    ...(numberOf(f.get('mem_available_kb')) !== undefined ? { memAvailableMb: Math.round(numberOf(f.get('mem_available_kb'))! / 1024) } : {}),
    ...(load.length ? { load } : {}),
    ...(freeMb !== undefined ? { freeMb } : {}),
  };
  result.resources = resources;
  const scheduler = schedulerFacts(f);
  if (scheduler) result.scheduler = scheduler;
  steps.push({
    step: 'resources',
    ok: true,
    detail: `${resources.cpus ?? '?'} CPUs, ${resources.memTotalMb ?? '?'} MB memory (${resources.memAvailableMb ?? '?'} MB available), load ${load.join(' ') || '?'}${scheduler ? `; jobs go to ${describeScheduler(scheduler)}` : ''}`,
    ...(scheduler && !scheduler.reachable ? { warning: `the gateway could not reach the ${scheduler.type} scheduler (check --env SLURM_CONF/SGE_* and --scheduler-bin)` } : {}),
  });
  return true;
}

function via(host: ResolvedHost): string {
  if (host.proxyJump) return ` via ProxyJump ${host.proxyJump}`;
  if (host.proxyCommand) return ' via ProxyCommand';
  return '';
}

/** Which reader's answer this is: a difference between `ssh -G` and ours is the first suspect. */
function readBy(host: ResolvedHost): string {
  if (host.resolvedBy === 'none') return '';
  return host.resolvedBy === 'ssh -G' ? ' (ssh_config read by ssh -G)' : ` (ssh_config read by the built-in parser: ${host.resolvedByWhy ?? 'ssh -G unavailable'})`;
}

/** Certificates that sshd would refuse for sure (expired, wrong principal...), said before the login. */
function certificateWarning(host: ResolvedHost): { warning?: string } {
  const problems: string[] = [];
  for (const file of host.certificateFiles) {
    try {
      const problem = checkCertificate(parseCertificate(readFileSync(file, 'utf8')), host.user, file);
      if (problem) problems.push(problem.message);
    } catch (error) {
      problems.push(`certificate file ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (error as Error).message}`);
    }
  }
  return problems.length ? { warning: `${problems.join('; ')}: not offered` } : {};
}

function numberOf(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+(\.\d+)?$/.test(value)) return undefined;
  return Number(value);
}
