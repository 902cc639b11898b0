/**
 * The gateway's wire protocol as pure functions: building the one-line commands the gateway accepts
 * and reading its key=value replies and one-line refusals. No sockets here (ssh2's protocol/transport
 * split), so every rule is unit-testable and mirrors the checks in mint-gateway.sh.
 */
import { GatewayError, InputError, type ErrorContext } from '../errors.js';
import type { JobState, Resources, SchedulerInfo } from '../types.js';

/** The protocol this client speaks; the gateway reports its own in `probe`. */
/**
 * 2 since downloads speak rsync's daemon mode (`get`/`take JOB`), jobs may be `queued` behind a
 * scheduler with `sched_*` lines, and `list long` exists: a protocol-1 peer misreads each of these.
 */
export const PROTOCOL_VERSION = 2;

export type Verb = 'probe' | 'list' | 'put' | 'putx' | 'get' | 'take' | 'takex' | 'start' | 'run' | 'startx' | 'runx' | 'jobx' | 'status' | 'logs' | 'cancel' | 'rm';

const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CAPS = /^[0-9]*\.[A-Za-z]*$/;
const PROGRAM_ARG = /^[A-Za-z0-9._,:=+@%-]{1,255}$/;
export const MAX_PROGRAM_ARGS = 64;

export function isJobId(value: string): boolean {
  return JOB_ID.test(value);
}

/** The one check of a caller's job id: a lowercase UUID, as the gateway's own check demands. */
export function checkJobId(value: string, context: ErrorContext = {}): string {
  if (!isJobId(value)) throw new InputError(`job id ${JSON.stringify(value)} is not a lowercase UUID`, { step: 'config', ...context });
  return value;
}

const PROGRAM_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Bytes of one argument or variable in a startx/runx request. */
export const MAX_REQUEST_VALUE = 4096;

/**
 * Program arguments, checked before connecting: at most 64, each any string of 1-4096 UTF-8 bytes
 * without NUL (a path with / and spaces, Japanese, `~` or `$` kept as they are). One validator, one
 * way of failing (InputError).
 */
export function checkProgramArgs(args: readonly string[], context: ErrorContext = {}): readonly string[] {
  const refuse = (message: string): never => {
    throw new InputError(message, { step: 'config', ...context });
  };
  if (args.length > MAX_PROGRAM_ARGS) refuse(`at most ${MAX_PROGRAM_ARGS} program arguments are allowed`);
  for (const arg of args) {
    const bytes = Buffer.byteLength(arg, 'utf8');
    if (bytes < 1 || bytes > MAX_REQUEST_VALUE || arg.includes('\0') || !isWellFormed(arg)) {
      refuse(`program argument ${JSON.stringify(arg.slice(0, 80))} must be 1-${MAX_REQUEST_VALUE} bytes of UTF-8 without NUL`);
    }
  }
  return args;
}

/** A program name the site gave with `--program NAME=PATH`, and variables for `--allow-env` names. */
export function checkProgramRequest(request: { program?: string; env?: Readonly<Record<string, string>> }, context: ErrorContext = {}): void {
  const refuse = (message: string): never => {
    throw new InputError(message, { step: 'config', ...context });
  };
  if (request.program !== undefined && !PROGRAM_NAME.test(request.program)) refuse(`program name ${JSON.stringify(request.program)} must be 1-64 letters, digits and ._-`);
  const env = Object.entries(request.env ?? {});
  if (env.length > 64) refuse('at most 64 variables are allowed');
  for (const [name, value] of env) {
    if (!ENV_NAME.test(name)) refuse(`variable name ${JSON.stringify(name)} must be letters, digits and _, not starting with a digit`);
    const bytes = Buffer.byteLength(`${name}=${value}`, 'utf8');
    if (bytes > MAX_REQUEST_VALUE || /[\0\n]/.test(value) || !isWellFormed(value)) {
      refuse(`variable ${name}: NAME=VALUE must be at most ${MAX_REQUEST_VALUE} bytes of UTF-8 without NUL or newline`);
    }
  }
}

function isWellFormed(text: string): boolean {
  // A lone surrogate would not survive as UTF-8 (it becomes U+FFFD).
  return !/[\uD800-\uDFFF]/.test(text.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''));
}

/** Whether these arguments need no request (start/run carry them on the command line as they are). */
export function plainArgs(args: readonly string[]): boolean {
  return args.every((arg) => PROGRAM_ARG.test(arg));
}

/**
 * The body of a startx/runx request: `program HEX`, `arg HEX`, `env HEX` lines, each value's UTF-8
 * bytes in lowercase hex (see mgw_read_request in the gateway).
 */
export function formatRequest(request: { program?: string; args?: readonly string[]; env?: Readonly<Record<string, string>>; resources?: Resources; manifest?: string }): string {
  const hex = (text: string): string => Buffer.from(text, 'utf8').toString('hex');
  const lines: string[] = [];
  if (request.program !== undefined) lines.push(`program ${hex(request.program)}`);
  for (const arg of request.args ?? []) lines.push(`arg ${hex(arg)}`);
  for (const [name, value] of Object.entries(request.env ?? {})) lines.push(`env ${hex(`${name}=${value}`)}`);
  // Resources for a batch scheduler: decimal numbers, hex-coded like every other value.
  const r = request.resources ?? {};
  for (const [kind, value] of [['cpus', r.cpus], ['memory_mb', r.memoryMb], ['walltime_min', r.walltimeMinutes], ['nodes', r.nodes]] as const) {
    if (value !== undefined) lines.push(`${kind} ${hex(String(value))}`);
  }
  // The SHA-256 of the inputs' manifest (src/transfer/manifest.ts): the gateway checks the work dir
  // against it before the program starts (mgw_check_inputs).
  if (request.manifest !== undefined) {
    if (!/^[0-9a-f]{64}$/.test(request.manifest)) throw new TypeError('a manifest digest is 64 lowercase hex digits');
    lines.push(`manifest ${hex(request.manifest)}`);
  }
  return lines.map((l) => `${l}\n`).join('');
}

export type GatewayCommand =
  | { verb: 'probe' }
  /** `long` asks for each job's size and age (gateway 0.3.1 on; older ones refuse it with E_USAGE). */
  | { verb: 'list'; long?: boolean }
  | { verb: 'put'; job: string; caps: string }
  | { verb: 'get' | 'take'; job: string }
  /** A small job's files as one inline stream (transfer/inline.ts): putx reads it on stdin, takex writes it on stdout. */
  | { verb: 'putx' | 'takex'; job: string }
  /** putx and runx in one request: the request (`length` bytes), then the inputs on stdin. */
  | { verb: 'jobx'; job: string; length: number }
  | { verb: 'start' | 'run'; job: string; args?: readonly string[] }
  | { verb: 'startx' | 'runx'; job: string }
  | { verb: 'status' | 'cancel' | 'rm'; job: string }
  | { verb: 'logs'; job: string; offset: number };

export function formatCommand(command: GatewayCommand): string {
  const words: string[] = ['mint-gw', command.verb];
  if ('job' in command) {
    if (!isJobId(command.job)) throw new TypeError(`not a job id: ${command.job}`);
    words.push(command.job);
  }
  switch (command.verb) {
    case 'put':
      if (!CAPS.test(command.caps) || command.caps.length > 32) throw new TypeError(`bad rsync caps: ${command.caps}`);
      words.push(command.caps);
      break;
    case 'list':
      if (command.long) words.push('long');
      break;
    case 'jobx':
      if (!Number.isSafeInteger(command.length) || command.length < 0 || command.length > 1024 * 1024) throw new TypeError('bad jobx request length');
      words.push(String(command.length));
      break;
    case 'logs':
      if (!Number.isSafeInteger(command.offset) || command.offset < 0) throw new TypeError('bad log offset');
      words.push(String(command.offset));
      break;
    case 'start':
    case 'run': {
      const args = checkProgramArgs(command.args ?? []);
      if (!plainArgs(args)) throw new TypeError('these arguments need startx/runx (formatRequest)');
      words.push(...args);
      break;
    }
    default:
      break;
  }
  return words.join(' ');
}

/** `key=value` lines into a map; later keys win; lines without `=` are ignored. */
export function parseKeyValues(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return out;
}

export type { JobState };

export interface JobStatus {
  jobId: string;
  state: JobState;
  exitCode: number | undefined;
  pid: number | undefined;
  logBytes: number;
  /** Present for a job given to a batch scheduler. */
  scheduler?: SchedulerInfo;
}

const STATES: readonly JobState[] = ['created', 'queued', 'running', 'exited', 'cancelled', 'lost'];

/**
 * A job's resources, checked before connecting: whole numbers from 1 (the gateway holds them to the
 * site's maxima). One validator, one way of failing (InputError).
 */
export function checkResources(resources: Resources | undefined, context: ErrorContext = {}): void {
  for (const [name, value] of Object.entries(resources ?? {})) {
    if (!['cpus', 'memoryMb', 'walltimeMinutes', 'nodes'].includes(name)) throw new InputError(`unknown resource ${JSON.stringify(name)} (cpus, memoryMb, walltimeMinutes, nodes)`, { step: 'config', ...context });
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < 1 || value > 999_999_999) throw new InputError(`resource ${name} must be a whole number from 1, got ${JSON.stringify(value)}`, { step: 'config', ...context });
  }
}

/** The scheduler's line on stderr (`run`, `logs`): `mint-gw: sched: job=J id=N state=S reason=R`. */
export function parseSchedLine(line: string): SchedulerInfo | undefined {
  const m = /^mint-gw: sched: job=\S+ id=(\S+) state=(\S+) reason=(\S+)$/.exec(line);
  return m ? { id: m[1]!, state: m[2]!, reason: m[3]! } : undefined;
}

export function parseStatus(text: string, context: ErrorContext = {}): JobStatus {
  const kv = parseKeyValues(text);
  const protocol = kv.get('mint-gw');
  if (protocol !== undefined) checkCompatible({ protocol: Number(protocol), version: 'unknown', fields: kv }, context);
  const state = kv.get('state') as JobState | undefined;
  const jobId = kv.get('job');
  if (!jobId || !state || !STATES.includes(state)) {
    throw new GatewayError('GATEWAY_PROTOCOL', `unreadable status reply from gateway: ${JSON.stringify(text.slice(0, 200))}`, context);
  }
  const num = (key: string): number | undefined => {
    const v = kv.get(key);
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  };
  const sched = kv.get('sched');
  const scheduler = sched ? { id: kv.get('sched_id') ?? '-', state: kv.get('sched_state') ?? '-', reason: kv.get('sched_reason') ?? '-' } : undefined;
  return { jobId, state, exitCode: num('exit'), pid: num('pid'), logBytes: num('log_bytes') ?? 0, ...(scheduler ? { scheduler } : {}) };
}

/** What `run` reports on stderr before the log: `mint-gw: started: job=J state=S pid=P`. */
export function parseStartedLine(stderr: string): { state: JobState; pid: number | undefined } | undefined {
  const m = /^mint-gw: started: job=\S+ state=(\S+) pid=(\S+)$/m.exec(stderr);
  if (!m || !STATES.includes(m[1] as JobState)) return undefined;
  return { state: m[1] as JobState, pid: /^\d+$/.test(m[2]!) ? Number(m[2]) : undefined };
}

/** `take`'s end of rsync on stderr, `mint-gw: sent: job=J rsync=N`: rsync's exit status N. */
export function parseSentLine(line: string): number | undefined {
  const m = /^mint-gw: sent: job=\S+ rsync=(\d+)$/.exec(line);
  return m ? Number(m[1]) : undefined;
}

/** A line of the manifest a get/take served (`mint-gw: manifest: HEXPATH BYTES SHA256`): the line's canonical part. */
export function manifestLinePart(line: string): string | undefined {
  return line.startsWith('mint-gw: manifest: ') ? line.slice('mint-gw: manifest: '.length) : undefined;
}

/** The end of a served manifest: `mint-gw: manifest-end: job=J files=N sha256=D version=V audit=HEAD`. */
export interface ManifestEnd {
  files: number;
  sha256: string;
  version: string;
  /** The hash of the download's own audit line: the site's audit chain head as the download left it ('-' when unknown). */
  auditHead: string;
}

export function parseManifestEnd(line: string): ManifestEnd | undefined {
  const m = /^mint-gw: manifest-end: job=\S+ files=(\d+) sha256=([0-9a-f]{64}) version=(\S+) audit=(\S+)$/.exec(line);
  return m ? { files: Number(m[1]), sha256: m[2]!, version: m[3]!, auditHead: m[4]! } : undefined;
}

/** Whether `take`'s stderr says the gateway removed the job after sending it. */
export function tookAndRemoved(stderr: string, job: string): boolean {
  return stderr.split('\n').includes(`mint-gw: removed: job=${job}`);
}

/** The final status `logs` reports on stderr once the log is complete. */
export function parseLogTrailer(stderr: string): { state: JobState; exitCode: number | undefined } | undefined {
  const m = /^mint-gw: status: job=\S+ state=(\S+) exit=(\S+)$/m.exec(stderr);
  if (!m || !STATES.includes(m[1] as JobState)) return undefined;
  return { state: m[1] as JobState, exitCode: /^\d+$/.test(m[2]!) ? Number(m[2]) : undefined };
}

export interface JobListing {
  jobId: string;
  state: JobState;
  exitCode: number | undefined;
  /** Disk use of the job's dir on the site (inputs, results, log) in KiB, by du -sk. */
  sizeKiB?: number;
  /** Seconds since the job's dir last changed (its start, its end: what --max-age-days counts). */
  ageSeconds?: number;
}

/** `list`'s lines, `JOB STATE [exit=N] [kb=N] [age=S]` (the last two from `list long`); others are skipped. */
export function parseList(text: string): JobListing[] {
  const jobs: JobListing[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\S+) (\S+)((?: [a-z]+=\d+)*)$/.exec(line);
    if (!m || !isJobId(m[1]!) || !STATES.includes(m[2] as JobState)) continue;
    const fields = new Map([...m[3]!.matchAll(/ ([a-z]+)=(\d+)/g)].map((f) => [f[1]!, Number(f[2])] as const));
    const exit = fields.get('exit');
    const kb = fields.get('kb');
    const age = fields.get('age');
    jobs.push({ jobId: m[1]!, state: m[2] as JobState, exitCode: exit, ...(kb === undefined ? {} : { sizeKiB: kb }), ...(age === undefined ? {} : { ageSeconds: age }) });
  }
  return jobs;
}

export interface ProbeReport {
  protocol: number;
  version: string;
  fields: Map<string, string>;
}

/**
 * The fix when the account's login shell writes into the session: sshd runs the forced command as
 * `$SHELL -c '...'`, so whatever the shell's start-up files print (bash reads ~/.bashrc under sshd,
 * and BASH_ENV) comes before the gateway's first byte, and rsync, which reads its peer's protocol
 * version from those bytes, stops with `protocol version mismatch -- is your shell clean?`.
 */
export const SHELL_CLEAN_HINT =
  "make the MInt account's login shell silent when it is not interactive: on the external computer, guard each echo in " +
  '~/.bashrc, ~/.profile or /etc/bash.bashrc with `case $- in *i*) echo ... ;; esac` (or `[ -t 1 ] && echo ...`), or move it to ' +
  '~/.bash_profile (read by interactive logins only); or give the account /bin/sh as its shell (chsh -s /bin/sh)';

/** What the login shell printed before the gateway's first line, when it printed anything. */
export function shellNoise(stdout: string): string | undefined {
  if (stdout.startsWith('mint-gw=')) return undefined;
  const at = stdout.search(/^mint-gw=/m);
  return at > 0 ? stdout.slice(0, at) : undefined;
}

/** The typed error for a session stream the login shell polluted; `noise` is what it printed, when known. */
export function shellNoiseError(what: string, noise: string | undefined, context: ErrorContext = {}): GatewayError {
  const shown = noise === undefined ? '' : `: ${JSON.stringify(noise.length > 120 ? `${noise.slice(0, 120)}...` : noise)} (${Buffer.byteLength(noise)} bytes)`;
  return new GatewayError(
    'GATEWAY_PROTOCOL',
    `${what}: the account's login shell prints before the gateway answers${shown}; rsync cannot work through such a stream, so every job's transfer fails`,
    { ...context, hint: SHELL_CLEAN_HINT },
  );
}

export function parseProbe(text: string, context: ErrorContext = {}): ProbeReport {
  // Byte-exact: the gateway's answer is the whole stream, from its first byte. A key=value reader
  // would skip a banner line and call a host ready on which every transfer fails.
  const noise = shellNoise(text);
  if (noise !== undefined) throw shellNoiseError('the gateway\'s answer does not start the stream', noise, context);
  const fields = parseKeyValues(text);
  const protocol = Number(fields.get('mint-gw'));
  if (!Number.isInteger(protocol) || protocol < 1) {
    throw new GatewayError(
      'GATEWAY_PROTOCOL',
      'the remote side did not answer as a mint gateway (no "mint-gw=" line in its probe reply)',
      { ...context, hint: 'check that the key\'s authorized_keys line has command="…/mint-gateway.sh --root …"' },
    );
  }
  return { protocol, version: fields.get('version') ?? 'unknown', fields };
}

/** Refuses a gateway whose protocol differs, naming the side to upgrade. */
export function checkCompatible(report: ProbeReport, context: ErrorContext = {}): void {
  if (report.protocol === PROTOCOL_VERSION) return;
  const side = report.protocol < PROTOCOL_VERSION ? 'the gateway on the external computer (run `mint-gateway install` there again)' : 'mint-ssh-exec on the MInt side';
  throw new GatewayError(
    'GATEWAY_INCOMPATIBLE',
    `gateway speaks protocol ${report.protocol} (version ${report.version}), this client speaks ${PROTOCOL_VERSION}`,
    { ...context, hint: `upgrade ${side}` },
  );
}

export interface Refusal {
  gatewayCode: string;
  message: string;
}

/** Finds the gateway's `mint-gw: error: E_X: ...` line in stderr. */
export function parseRefusal(stderr: string): Refusal | undefined {
  const m = /^mint-gw: error: (E_[A-Z]+): (.*)$/m.exec(stderr);
  return m ? { gatewayCode: m[1]!, message: m[2]! } : undefined;
}

/** Turns a failed verb into a GatewayError, with the gateway's own reason when it gave one. */
export function refusalError(verb: Verb, exitCode: number | undefined, stderr: string, context: ErrorContext = {}, signal?: string): GatewayError {
  const refusal = parseRefusal(stderr);
  if (refusal) {
    return new GatewayError('GATEWAY_REFUSED', `gateway refused '${verb}': ${refusal.gatewayCode}: ${refusal.message}`, {
      ...context,
      gatewayCode: refusal.gatewayCode,
      ...(exitCode === undefined ? {} : { exitCode }),
      ...(refusal.gatewayCode === 'E_CONFIG' ? { hint: 'the gateway\'s options in authorized_keys need fixing on the external computer; run `mint-gateway doctor` there' } : {}),
    });
  }
  const tail = stderr.trim().split('\n').slice(-3).join(' | ');
  return new GatewayError(
    'GATEWAY_PROTOCOL',
    `'${verb}' failed with ${signal ? `signal ${signal}` : `exit code ${exitCode ?? 'none'}`} and no gateway reason${tail ? `: ${tail}` : ''}`,
    {
      ...context,
      ...(exitCode === undefined ? {} : { exitCode }),
      hint: 'if this host has no mint gateway in authorized_keys, install one with `mint-gateway install`',
    },
  );
}
