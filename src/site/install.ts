/**
 * `mint-gateway install`: puts the gateway script in place and writes the one authorized_keys line
 * that pins MInt's key to it. Idempotent: the line is found again by its key and replaced, never
 * duplicated; `uninstall` removes exactly that line.
 */
import { chmod, copyFile, mkdir, readFile, realpath, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { GATEWAY_SCRIPT } from '../assets/index.js';
import { ConfigError } from '../errors.js';
import { fingerprintSha256, keyTypeOf } from '../config/known-hosts.js';

export { GATEWAY_SCRIPT };

const KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
]);

// Variables a client must never set (the gateway refuses them in --allow-env too): the loader's,
// shells' and interpreters' code hooks, and what the gateway sets itself.
const CODE_RUNNING_ENV =
  /^(LD_.*|BASH_ENV|ENV|BASH_FUNC_.*|IFS|SHELLOPTS|BASHOPTS|PS4|PATH|CDPATH|GCONV_PATH|LOCPATH|NLSPATH|HOSTALIASES|PYTHON.*|PERL5.*|PERLLIB|RUBYOPT|RUBYLIB|NODE_OPTIONS|NODE_PATH|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|MINT_JOB_.*)$/;

// Paths end up inside command="..." which sshd runs through the login shell: allow only bytes that
// need no quoting, so no path can break out of the command.
const SAFE_PATH = /^\/[A-Za-z0-9._/+-]*$/;

export interface GatewayOptions {
  root: string;
  program: string;
  keyName?: string;
  export?: string;
  maxJobs?: number;
  minFreeMb?: number;
  maxAgeDays?: number;
  /** Seconds between cancel's TERM and KILL (gateway default 10). */
  grace?: number;
  /** Uploads stop (and the job is removed) before free inodes under the root fall below this. */
  minFreeInodes?: number;
  /** Per-job caps on the work dir's size (MB) and entries, held during every upload. */
  maxJobMb?: number;
  maxJobFiles?: number;
  /** Seconds the gateway waits on a silent client (rsync --timeout, take's answer; default 600). */
  clientTimeout?: number;
  /** NAME=VALUE variables every program gets (e.g. LANG=ja_JP.UTF-8, SLURM_CONF=...). */
  env?: readonly string[];
  /** Programs a client may pick by name (`--program NAME=PATH`), beside the default `program`. */
  programs?: Readonly<Record<string, string>>;
  /** Variable names a client may set for the program (`--allow-env`). */
  allowEnv?: readonly string[];
  rsync?: string;
  /**
   * @deprecated Ignored: downloads are confined by rsync's daemon mode on any rsync >= 3.1.0, with or
   * without --confine-root. Kept so that callers written for older releases still compile.
   */
  allowUnconfinedRsync?: boolean;
  /** Where programs run: on this host (`none`, the default) or through a batch scheduler. */
  scheduler?: Scheduler;
  /** Site-fixed submission options (partition, account, QOS, a default time limit), space-separated. */
  schedulerArgs?: string;
  /** Where the scheduler's commands are, looked in before /usr/bin, /bin, /usr/sbin, /sbin (PBS: /opt/pbs/bin). */
  schedulerBin?: string;
  /** Maxima a client's resources may ask for; over one is E_LIMIT (0 or absent: no maximum). */
  maxCpus?: number;
  maxMemoryMb?: number;
  maxWalltimeMin?: number;
  /**
   * Refuse every request for which sshd did not say which key or certificate logged in (its
   * `ExposeAuthInfo yes`), so that a per-job certificate can never pass unscoped: with it exposed,
   * a certificate whose key id is `mint-ssh-exec job JOB ...` opens job JOB only (E_SCOPE otherwise).
   */
  enforceJobScope?: boolean;
  /**
   * Hash big inputs while they upload (issue 17), so that the start's check reads only what changed;
   * worth it where the site has a core to spare (on 2 busy cores it slowed a 1 GiB upload ~30 %).
   */
  hashUploads?: boolean;
}

/** The schedulers the gateway can submit to. */
export type Scheduler = 'none' | 'slurm' | 'sge' | 'pbs';

/**
 * Options the gateway sets itself on every submission (mirrors mgw_sched_gateway_option): a site
 * value would move the job's files, change how its id is read, or change what the submission
 * means (Grid Engine's -b re-splits a command line, -@ reads options from a file, arrays run the
 * program many times, blocking submissions hold the gateway open).
 */
const GATEWAY_OPTION: Record<Exclude<Scheduler, 'none'>, RegExp> = {
  slurm: /^(--wrap|--output|--error|--input|--chdir|-D|--job-name|-J|--parsable|--wait|-W|--array|-a|--export-file|--batch|--open-mode|-o|-e|-i)/,
  sge: /^-(b|o|e|j|N|wd|cwd|terse|sync|S|@|i|t|now|shell)$/,
  pbs: /^-([NoejSIJXkdwz]|W.*block)/,
};

/** Checks `--scheduler-args` as the gateway will: the bytes, single spaces, no gateway-set option. */
export function checkSchedulerArgs(value: string, scheduler: Exclude<Scheduler, 'none'> = 'slurm'): string {
  if (!/^[A-Za-z0-9 ._,:=+@%/-]+$/.test(value)) throw new ConfigError('--scheduler-args holds a byte outside [A-Za-z0-9 ._,:=+@%/-]');
  if (/^ | $| {2}/.test(value)) throw new ConfigError('--scheduler-args: tokens must be separated by exactly one space');
  let previous = '';
  for (const token of value.split(' ')) {
    const blocks = scheduler === 'pbs' && previous === '-W' && token.startsWith('block');
    if (blocks || (token.startsWith('-') && GATEWAY_OPTION[scheduler].test(token))) throw new ConfigError(`--scheduler-args may not set '${token}': the gateway sets it`);
    previous = token;
  }
  return value;
}

export interface KeyRestrictions {
  /** sshd's from="pattern-list". */
  from?: string;
  /** sshd's expiry-time="YYYYMMDD[HHMM[SS]][Z]". */
  expiryTime?: string;
  /** Trust user certificates signed by this CA key instead of the key itself. */
  certAuthority?: boolean;
  principals?: string;
}

export interface PublicKey {
  type: string;
  base64: string;
  comment: string;
  fingerprint: string;
}

/** Checks a public key line as sshd would read it: known type, base64 blob whose type matches. */
export function parsePublicKey(text: string): PublicKey {
  const line = text.trim().split('\n').find((l) => l.trim() && !l.trim().startsWith('#'))?.trim() ?? '';
  const parts = line.split(/\s+/);
  const [type, base64, ...rest] = parts;
  if (!type || !base64) throw new ConfigError('no public key found: expected a line like "ssh-ed25519 AAAA... comment"');
  if (!KEY_TYPES.has(type)) throw new ConfigError(`unsupported or malformed key type ${JSON.stringify(type.slice(0, 40))} (a private key? give the .pub file)`);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw new ConfigError('the key\'s base64 part is malformed');
  const blob = Buffer.from(base64, 'base64');
  let inner: string;
  try {
    inner = keyTypeOf(blob);
  } catch {
    throw new ConfigError('the key\'s base64 part does not decode to an SSH key');
  }
  if (inner !== type) throw new ConfigError(`the key says ${type} but its data is ${inner}`);
  return { type, base64, comment: rest.join(' '), fingerprint: fingerprintSha256(blob) };
}

export function gatewayCommand(gatewayPath: string, options: GatewayOptions): string {
  for (const [what, path] of [['gateway path', gatewayPath], ['--root', options.root], ['--program', options.program], ['--rsync', options.rsync]] as const) {
    if (path !== undefined && !SAFE_PATH.test(path)) {
      throw new ConfigError(`${what} ${JSON.stringify(path)} must be an absolute path of letters, digits and ._/+- only`);
    }
  }
  const words = [gatewayPath, '--root', options.root, '--program', options.program];
  for (const [name, path] of Object.entries(options.programs ?? {})) {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new ConfigError(`--program NAME=PATH: NAME ${JSON.stringify(name)} may hold only letters, digits and ._- (at most 64)`);
    if (!SAFE_PATH.test(path)) throw new ConfigError(`--program ${name}=${JSON.stringify(path)} must be an absolute path of letters, digits and ._/+- only`);
    words.push('--program', `${name}=${path}`);
  }
  if (options.keyName !== undefined) {
    if (!/^[A-Za-z0-9._@-]+$/.test(options.keyName)) throw new ConfigError('--key-name may hold only letters, digits and ._@-');
    words.push('--key-name', options.keyName);
  }
  if (options.export !== undefined) {
    if (!/^[A-Za-z0-9._*?/,+=@%-]+$/.test(options.export)) throw new ConfigError('--export holds a character outside A-Za-z0-9._*?/,+=@%-');
    // Globs must reach the gateway unexpanded through the login shell, hence the single quotes.
    words.push('--export', `'${options.export}'`);
  }
  for (const [flag, value] of [
    ['--max-jobs', options.maxJobs],
    ['--min-free-mb', options.minFreeMb],
    ['--max-age-days', options.maxAgeDays],
    ['--grace', options.grace],
    ['--min-free-inodes', options.minFreeInodes],
    ['--max-job-mb', options.maxJobMb],
    ['--max-job-files', options.maxJobFiles],
    ['--client-timeout', options.clientTimeout],
    ['--max-cpus', options.maxCpus],
    ['--max-memory-mb', options.maxMemoryMb],
    ['--max-walltime-min', options.maxWalltimeMin],
  ] as const) {
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 0 || value > 999_999_999) throw new ConfigError(`${flag} must be a whole number`);
    words.push(flag, String(value));
  }
  if (options.clientTimeout === 0) throw new ConfigError('--client-timeout must be at least 1 second');
  for (const assignment of options.env ?? []) {
    // The value reaches the gateway through the login shell inside single quotes, and the whole
    // command inside command="..." (where " and \ are escaped below): no quote, backslash or
    // control byte may break out of either.
    if (!/^[A-Za-z_][A-Za-z0-9_]*=[\x20-\x7e]*$/.test(assignment) || /['"\\]/.test(assignment)) {
      throw new ConfigError(`--env ${JSON.stringify(assignment)} must be NAME=VALUE (NAME of letters, digits and _; VALUE printable ASCII without quotes or backslashes)`);
    }
    words.push('--env', `'${assignment}'`);
  }
  if (options.allowEnv?.length) {
    for (const name of options.allowEnv) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new ConfigError(`--allow-env ${JSON.stringify(name)} must be a variable name (letters, digits and _)`);
      if (CODE_RUNNING_ENV.test(name)) throw new ConfigError(`--allow-env ${name} would let a client run code of its choosing; set it with --env instead`);
    }
    words.push('--allow-env', options.allowEnv.join(','));
  }
  if (options.rsync !== undefined) words.push('--rsync', options.rsync);
  if (options.enforceJobScope) words.push('--enforce-job-scope');
  if (options.hashUploads) words.push('--hash-uploads');
  const scheduler: string = options.scheduler ?? 'none';
  if (scheduler !== 'none' && scheduler !== 'slurm' && scheduler !== 'sge' && scheduler !== 'pbs') {
    throw new ConfigError(`--scheduler must be slurm, sge, pbs or none, got ${JSON.stringify(scheduler)}`);
  }
  if (scheduler !== 'none') words.push('--scheduler', scheduler);
  if (options.schedulerBin !== undefined) {
    if (scheduler === 'none') throw new ConfigError('--scheduler-bin needs --scheduler slurm, sge or pbs');
    if (!/^\/[A-Za-z0-9._/+@%,:=-]*$/.test(options.schedulerBin) || /(^|\/)\.\.(\/|$)/.test(options.schedulerBin)) {
      throw new ConfigError('--scheduler-bin must be an absolute path of [A-Za-z0-9._/+@%,:=-] without ..');
    }
    words.push('--scheduler-bin', options.schedulerBin);
  }
  if (options.schedulerArgs !== undefined) {
    if (scheduler === 'none') throw new ConfigError('--scheduler-args needs --scheduler slurm, sge or pbs');
    // Spaces must reach the gateway as one argument through the login shell: single quotes.
    words.push('--scheduler-args', `'${checkSchedulerArgs(options.schedulerArgs, scheduler)}'`);
  }
  return words.join(' ');
}

export function authorizedKeysLine(key: PublicKey, gatewayPath: string, options: GatewayOptions, restrictions: KeyRestrictions = {}): string {
  const opts = ['restrict', `command="${gatewayCommand(gatewayPath, options).replace(/["\\]/g, '\\$&')}"`];
  if (restrictions.from !== undefined) {
    if (!/^[A-Za-z0-9.:*?!,/_-]+$/.test(restrictions.from)) throw new ConfigError('--from must be an sshd pattern-list (hosts, addresses, CIDR, * ? !)');
    opts.push(`from="${restrictions.from}"`);
  }
  if (restrictions.expiryTime !== undefined) {
    if (!/^\d{8}(\d{4}(\d{2})?)?Z?$/.test(restrictions.expiryTime)) throw new ConfigError('--expiry-time must be YYYYMMDD[HHMM[SS]][Z]');
    opts.push(`expiry-time="${restrictions.expiryTime}"`);
  }
  if (restrictions.certAuthority) {
    opts.unshift('cert-authority');
    if (restrictions.principals !== undefined) {
      if (!/^[A-Za-z0-9._@,-]+$/.test(restrictions.principals)) throw new ConfigError('--principals must be a comma-separated list of names');
      opts.push(`principals="${restrictions.principals}"`);
    }
  } else if (restrictions.principals !== undefined) {
    throw new ConfigError('--principals needs --cert-authority');
  }
  return `${opts.join(',')} ${key.type} ${key.base64} ${marker(key)}`;
}

function marker(key: PublicKey): string {
  return `mint-gateway:${key.fingerprint}`;
}

export interface InstallRequest {
  publicKey: string;
  gatewayPath: string;
  authorizedKeys: string;
  gateway: GatewayOptions;
  restrictions?: KeyRestrictions;
  /** Only compute the line; write nothing. */
  print?: boolean;
  /** The account's home dir (default $HOME): the job root must not be it, nor hold or sit in its ~/.ssh. */
  home?: string;
}

export interface InstallOutcome {
  line: string;
  /** The line it replaced ('updated'). */
  previous?: string;
  /** 'added', 'updated', 'unchanged', or 'printed'. */
  action: 'added' | 'updated' | 'unchanged' | 'printed';
}

export async function install(request: InstallRequest): Promise<InstallOutcome> {
  const key = parsePublicKey(request.publicKey);
  const line = authorizedKeysLine(key, request.gatewayPath, request.gateway, request.restrictions);
  if (request.print) return { line, action: 'printed' };
  await checkRootPlace(request.gateway.root, request.home ?? process.env.HOME ?? homedir());

  await mkdir(dirname(request.gatewayPath), { recursive: true, mode: 0o700 });
  const tmpScript = `${request.gatewayPath}.${process.pid}.tmp`;
  await copyFile(GATEWAY_SCRIPT, tmpScript);
  await chmod(tmpScript, 0o755);
  await rename(tmpScript, request.gatewayPath);

  await mkdir(request.gateway.root, { recursive: true, mode: 0o700 });
  await chmod(request.gateway.root, 0o700);

  const existing = await readIfExists(request.authorizedKeys);
  const lines = existing === undefined ? [] : existing.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const index = lines.findIndex((l) => ownsLine(l, key));
  let action: InstallOutcome['action'];
  let previous: string | undefined;
  if (index < 0) {
    lines.push(line);
    action = 'added';
  } else if (lines[index] === line) {
    action = 'unchanged';
  } else {
    previous = lines[index];
    lines[index] = line;
    action = 'updated';
  }
  if (action !== 'unchanged') await writeKeysFile(request.authorizedKeys, lines);
  return { line, action, ...(previous !== undefined ? { previous } : {}) };
}

/**
 * The gateway refuses a job root that is, holds or sits in the home dir's ~/.ssh (an upload could
 * replace authorized_keys); refused here before anything is changed, not after `install` has made
 * the home dir 0700 and every request then fails.
 */
async function checkRootPlace(root: string, homeDir: string): Promise<void> {
  const real = async (path: string): Promise<string> => realpath(path).catch(() => resolve(path));
  const home = await real(homeDir);
  const target = await real(root);
  const ssh = join(home, '.ssh');
  if (target === home || target === '/' || `${ssh}/`.startsWith(`${target}/`) || `${target}/`.startsWith(`${ssh}/`)) {
    throw new ConfigError(`--root ${root} is the home dir, holds ~/.ssh or is inside it (the gateway refuses such a root); use a dedicated dir such as ~/mint-jobs`);
  }
}

/**
 * What re-installing changed, option by option: a line is rewritten whole from the options given
 * now (options not given again are dropped), so say exactly what went and what came.
 */
export function lineChanges(previous: string, line: string): { removed: string[]; added: string[] } {
  const options = (l: string): string[] => {
    const words: string[] = [];
    for (const m of l.matchAll(/(--[a-z-]+)(?: ('[^']*'|[^\s"-][^\s"]*))?/g)) words.push(m[2] ? `${m[1]} ${m[2]}` : m[1]!);
    for (const m of l.matchAll(/(?:^|,)(from|expiry-time|principals)="([^"]*)"/g)) words.push(`${m[1]}="${m[2]}"`);
    return words;
  };
  const before = options(previous);
  const after = options(line);
  return { removed: before.filter((w) => !after.includes(w)), added: after.filter((w) => !before.includes(w)) };
}

export async function uninstall(request: { publicKey: string; authorizedKeys: string }): Promise<boolean> {
  const key = parsePublicKey(request.publicKey);
  const existing = await readIfExists(request.authorizedKeys);
  if (existing === undefined) return false;
  const lines = existing.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const kept = lines.filter((l) => !(ownsLine(l, key) && l.includes(marker(key))));
  if (kept.length === lines.length) return false;
  await writeKeysFile(request.authorizedKeys, kept);
  return true;
}

/** Our line for this key: same key blob, whatever options it carries now. */
function ownsLine(line: string, key: PublicKey): boolean {
  return line.includes(` ${key.type} ${key.base64} `) || line.endsWith(` ${key.type} ${key.base64}`);
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** sshd reads authorized_keys at any moment: replace it whole, never leave it half-written. */
async function writeKeysFile(path: string, lines: string[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, lines.length ? `${lines.join('\n')}\n` : '', { mode: 0o600 });
  try {
    const mode = (await stat(path)).mode & 0o777;
    await chmod(tmp, mode & ~0o022);
  } catch {
    // new file: 0600 from writeFile
  }
  await rename(tmp, path);
}
