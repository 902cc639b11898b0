/**
 * `mint-gateway doctor`: what on the external computer can defeat a forced command, or break the
 * protocol, each with how to fix it.
 */
import { execFile } from 'node:child_process';
import { constants, type Stats } from 'node:fs';
import { access, readFile, realpath, stat } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { join, sep } from 'node:path';
import { promisify } from 'node:util';
import { wildcardMatch } from '../config/openssh.js';

const run = promisify(execFile);

/**
 * What came of one check. 'ok': done and passed. 'warn': done and passed, but something weakens or
 * slows the gateway. 'error': done and failed (defeats the gateway or stops jobs). 'skipped': could
 * not be done here (a command missing, permission denied, a file unreadable): never a pass; `detail`
 * says why and `fix` how to get it checked.
 */
export type DoctorStatus = 'ok' | 'warn' | 'error' | 'skipped';

export interface DoctorCheck {
  check: string;
  status: DoctorStatus;
  /** The check was done and passed ('ok' or 'warn'); false for 'error' and 'skipped'. */
  ok: boolean;
  /** From before `status`: 'error' for error, 'warning' for warn and skipped, 'info' for ok. */
  severity: 'error' | 'warning' | 'info';
  detail: string;
  fix?: string;
}

export interface DoctorOptions {
  root: string;
  program: string;
  gatewayPath: string;
  authorizedKeys: string;
  home?: string;
  shell?: string;
  /** The sshd asked for its effective settings (`sshd -T`): a path, or a name looked up in /usr/sbin:/usr/bin:/sbin:/bin. Default `sshd`. */
  sshd?: string;
}

function finding(check: string, status: DoctorStatus, detail: string, fix?: string): DoctorCheck {
  const severity = status === 'error' ? 'error' : status === 'ok' ? 'info' : 'warning';
  return { check, status, ok: status === 'ok' || status === 'warn', severity, detail, ...(fix ? { fix } : {}) };
}

/** Said of a path this account cannot reach: sshd and the gateway act as the account too. */
const IF_THIS_ACCOUNT = 'if this is the account MInt logs in as, sshd and the gateway cannot reach it either: fix its permissions';

export async function doctor(options: DoctorOptions): Promise<DoctorCheck[]> {
  const home = options.home ?? homedir();
  const account = whoami();
  const checks: DoctorCheck[] = [];
  const add = (c: DoctorCheck): void => void checks.push(c);

  const keys = await readText(options.authorizedKeys);
  const ourLines = (keys.state === 'read' ? keys.text : '').split('\n').filter((l) => l.includes('mint-gateway:SHA256:'));

  // ~/.ssh/rc runs before a forced command unless `restrict` or `no-user-rc` is on the key's line.
  const rc = join(home, '.ssh', 'rc');
  const rcThere = await presence(rc);
  if (rcThere === 'absent') add(finding('ssh-rc', 'ok', 'no ~/.ssh/rc'));
  else if (rcThere !== 'present') {
    add(finding('ssh-rc', 'skipped', `cannot tell whether ${rc} exists (${rcThere.why})`, `run doctor as the account that owns ${home}, or check \`ls -l ${rc}\` as root: if it exists, the mint-gateway line needs restrict`));
  } else if (keys.state === 'unreadable') {
    add(finding('ssh-rc', 'skipped', `${rc} exists, but ${options.authorizedKeys} cannot be read (${keys.why}) to see whether the gateway line's restrict keeps it from running`, `check that the mint-gateway line in ${options.authorizedKeys} starts with restrict, or remove ~/.ssh/rc`));
  } else {
    const covered = ourLines.length > 0 && ourLines.every((l) => /^(cert-authority,)?restrict\b|no-user-rc/.test(l));
    add(covered
      ? finding('ssh-rc', 'ok', `${rc} exists (the gateway line has restrict, so it does not run for MInt's key)`)
      : finding('ssh-rc', 'error', `${rc} exists and would run before the gateway`, 'reinstall with `mint-gateway install` (adds restrict) or remove ~/.ssh/rc'));
  }

  add(
    keys.state === 'unreadable'
      ? finding('authorized-key', 'skipped', `cannot read ${options.authorizedKeys} (${keys.why}), so could not look for the mint-gateway line`, `run doctor as the account that owns it; ${IF_THIS_ACCOUNT}`)
      : ourLines.length === 0
        ? finding('authorized-key', 'error', `no mint-gateway line in ${options.authorizedKeys}${keys.state === 'missing' ? ' (it does not exist)' : ''}`, 'run `mint-gateway install --key mint.pub ...`')
        : ourLines.every((l) => /(^|,)restrict(,| )/.test(l) && l.includes(`command="${options.gatewayPath} `))
          ? finding('authorized-key', 'ok', `${ourLines.length} mint-gateway line(s), restricted and pinned to ${options.gatewayPath}`)
          : finding('authorized-key', 'error', 'a mint-gateway line lacks restrict or points at another gateway path', 'rerun `mint-gateway install` to rewrite it'),
  );

  const sshd = await sshdSettings(options.sshd ?? 'sshd', 'error' in account ? undefined : account.username);
  add(sshd.check);
  add(jobScope(ourLines, sshd.settings));
  // sshd runs requests through /bin/sh when the passwd entry names no shell.
  const shell = options.shell ?? ('error' in account ? undefined : account.shell || '/bin/sh');
  add(shell
    ? await loginShell(shell, home, 'error' in account ? (process.env.USER ?? '') : account.username)
    : finding('login-shell', 'skipped', `cannot look up this account's login shell (${'error' in account ? account.error : ''})`, 'check that the shell in `getent passwd $(id -un)` starts silently: `SSH_CLIENT=x SHELL -c true` must print nothing'));
  add(await modeCheck('authorized-keys-mode', options.authorizedKeys, 'chmod 600'));
  add(await modeCheck('ssh-dir-mode', join(home, '.ssh'), 'chmod 700'));
  add(await modeCheck('gateway-mode', options.gatewayPath, 'chmod 755 (and owned by this account)', true));
  add(await rootCheck(options.root, home));
  for (const tool of ['rsync', 'setsid', 'flock', 'tail']) {
    const found = await firstExisting([`/usr/bin/${tool}`, `/bin/${tool}`]);
    add(found
      ? finding(`needs-${tool}`, 'ok', found)
      : finding(`needs-${tool}`, 'error', `${tool} not found in /usr/bin or /bin`, `install ${tool === 'setsid' || tool === 'flock' ? 'util-linux' : tool === 'tail' ? 'coreutils' : tool}`));
  }
  const programOk = await access(options.program, constants.X_OK).then(() => true, () => false);
  add(programOk
    ? finding('program', 'ok', `${options.program} is executable`)
    : finding('program', 'error', `${options.program} is missing or not executable`, `chmod +x ${options.program}`));
  return checks;
}

// Read by the loader or the login shell before the gateway's own scrubbing can run.
const DANGEROUS_ENV = ['LD_PRELOAD', 'LD_LIBRARY_PATH', 'LD_AUDIT', 'BASH_ENV', 'ENV', 'PATH', 'IFS', 'SHELLOPTS', 'PS4', 'BASH_FUNC_x%%'];

function globMatch(pattern: string, name: string): boolean {
  return wildcardMatch(name, pattern, false);
}

/** `sshd-config`, and sshd's effective settings (`sshd -T`) when they could be read. */
async function sshdSettings(sshd: string, user: string | undefined): Promise<{ check: DoctorCheck; settings?: string }> {
  const PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
  const yourself = (why: string): { check: DoctorCheck } => ({
    check: finding(
      'sshd-config',
      'skipped',
      `could not read sshd's settings: ${why}`,
      `run \`sudo sshd -T -C user=${user ?? '$(id -un)'},host=localhost,addr=127.0.0.1 | grep -Ei '^(permituserenvironment|acceptenv) '\` and check that PermitUserEnvironment is no and AcceptEnv matches none of ${DANGEROUS_ENV.map((n) => n.replace(/x%%$/, '*')).join(' ')}; or run doctor as root (--sshd PATH if sshd is elsewhere)`,
    ),
  });
  let text: string;
  try {
    text = (await run(sshd, ['-T'], { env: { PATH }, timeout: 15_000 })).stdout;
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string; killed?: boolean; signal?: string | null };
    if (e.code === 'ENOENT') return yourself(`${sshd} not found${sshd.includes('/') ? '' : ` in ${PATH}`}`);
    if (e.killed) return yourself(`\`${sshd} -T\` did not answer within 15 s`);
    const said = (e.stderr ?? '').trim().split('\n')[0]?.trim();
    const how = typeof e.code === 'number' ? `exit ${e.code}` : e.signal ? `killed by ${e.signal}` : (e.code ?? e.message);
    return yourself(`\`${sshd} -T\` failed (${how}${said ? `: ${said}` : ''}); it usually needs root`);
  }
  const get = (key: string): string[] => text.split('\n').filter((l) => l.startsWith(`${key} `)).map((l) => l.slice(key.length + 1));
  const permit = get('permituserenvironment');
  // OpenSSH's -T always prints it; without it nothing here was read from sshd's settings.
  if (permit.length === 0) return yourself(`\`${sshd} -T\` printed no permituserenvironment line`);
  const problems: string[] = [];
  if (permit.some((v) => v !== 'no')) problems.push('PermitUserEnvironment is on (environment= in keys could set LD_PRELOAD)');
  const accept = get('acceptenv').join(' ').trim();
  const risky = accept.split(/\s+/).filter((pattern) => pattern && DANGEROUS_ENV.some((name) => globMatch(pattern, name)));
  if (risky.length) problems.push(`AcceptEnv ${risky.join(' ')} lets clients set variables that run code before the gateway (${DANGEROUS_ENV.filter((n) => risky.some((p) => globMatch(p, n))).join(', ')})`);
  const check = problems.length
    ? finding('sshd-config', 'error', problems.join('; '), 'set PermitUserEnvironment no and narrow AcceptEnv in sshd_config')
    : finding('sshd-config', 'ok', `PermitUserEnvironment no; AcceptEnv ${accept || '(none)'}`);
  return { check, settings: text };
}

/**
 * Whether a per-job certificate opens its own job only (issue 17; the gateway's mgw_check_scope):
 * that needs sshd to expose the certificate that logged in (ExposeAuthInfo yes), and is kept even
 * when sshd_config changes only by the line's --enforce-job-scope (the gateway then refuses
 * everything rather than run unscoped). Only cert-authority lines can take certificates.
 */
function jobScope(ourLines: string[], settings: string | undefined): DoctorCheck {
  const caLines = ourLines.filter((l) => /^cert-authority,/.test(l));
  if (caLines.length === 0) return finding('job-scope', 'ok', 'no cert-authority line: no per-job certificates to scope');
  const enforced = caLines.every((l) => / --enforce-job-scope[ "]/.test(l));
  const expose = settings?.split('\n').find((l) => l.startsWith('exposeauthinfo '))?.slice('exposeauthinfo '.length);
  const how = 'set ExposeAuthInfo yes in sshd_config (and reload sshd), and reinstall with --enforce-job-scope';
  if (expose === undefined) {
    return finding(
      'job-scope',
      'skipped',
      `could not read sshd's ExposeAuthInfo${enforced ? ' (the line says --enforce-job-scope: without it every request is refused)' : ''}`,
      "run `sudo sshd -T | grep -i '^exposeauthinfo '`: per-job certificates are scoped to their job only with yes",
    );
  }
  if (expose !== 'yes') {
    return enforced
      ? finding('job-scope', 'error', 'the line says --enforce-job-scope but sshd has ExposeAuthInfo no: every request is refused', how)
      : finding('job-scope', 'warn', 'not enforced: sshd has ExposeAuthInfo no, so a per-job certificate can open any job', how);
  }
  return enforced
    ? finding('job-scope', 'ok', 'enforced: a per-job certificate opens its own job only (ExposeAuthInfo yes, --enforce-job-scope)')
    : finding('job-scope', 'warn', 'enforced while sshd has ExposeAuthInfo yes; without --enforce-job-scope on the line, turning it off would lift the scope silently', 'reinstall with --enforce-job-scope');
}

/** sshd runs the forced command through the login shell; a shell that prints breaks the protocol. */
async function loginShell(shell: string, home: string, user: string): Promise<DoctorCheck> {
  // sshd starts the shell in / when it cannot enter the home directory.
  const cwd = (await presence(home)) === 'present' ? home : '/';
  const started = performance.now();
  try {
    const { stdout, stderr } = await run(shell, ['-c', 'true'], {
      env: { HOME: home, SSH_CLIENT: '127.0.0.1 22 22', SSH_CONNECTION: '127.0.0.1 22 127.0.0.1 22', PATH: '/usr/bin:/bin', USER: user },
      cwd,
    });
    const ms = performance.now() - started;
    if (stdout || stderr) {
      return finding('login-shell', 'error', `${shell} prints at start-up: ${JSON.stringify((stdout + stderr).slice(0, 120))}`, 'make the startup files quiet for non-interactive shells, or chsh -s /bin/sh for this account');
    }
    return ms > 30
      ? finding('login-shell', 'warn', `${shell} starts silently in ${ms.toFixed(0)} ms (every gateway verb pays this)`, 'chsh -s /bin/sh for the MInt account: its startup files are not read then')
      : finding('login-shell', 'ok', `${shell} starts silently in ${ms.toFixed(0)} ms`);
  } catch (error) {
    return finding('login-shell', 'error', `${shell} -c true failed: ${(error as Error).message}`, 'fix the account\'s shell or its startup files');
  }
}

async function modeCheck(check: string, path: string, fix: string, executable = false): Promise<DoctorCheck> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (error) {
    return absent(error)
      ? finding(check, 'error', `${path} does not exist`, 'run `mint-gateway install`')
      : finding(check, 'skipped', `cannot stat ${path} (${code(error)})`, `check \`ls -ld ${path}\` as root (${fix} it if group or others can write it); ${IF_THIS_ACCOUNT}`);
  }
  const uid = process.getuid?.();
  const writableByOthers = (info.mode & 0o022) !== 0;
  const wrongOwner = uid !== undefined && info.uid !== uid && info.uid !== 0;
  const notExec = executable && (info.mode & 0o100) === 0;
  if (writableByOthers || wrongOwner || notExec) {
    const why = [writableByOthers && 'writable by group or others', wrongOwner && 'owned by another user', notExec && 'not executable'].filter(Boolean).join(', ');
    return finding(check, 'error', `${path} is ${why}`, `${fix} ${path}`);
  }
  return finding(check, 'ok', `${path} mode ${(info.mode & 0o777).toString(8)}`);
}

async function rootCheck(root: string, home: string): Promise<DoctorCheck> {
  let real: string;
  try {
    real = await realpath(root);
  } catch (error) {
    return absent(error)
      ? finding('job-root', 'error', `${root} does not exist`, `mkdir -m 700 ${root}`)
      : finding('job-root', 'skipped', `cannot resolve ${root} (${code(error)})`, `run doctor as the account that owns it; ${IF_THIS_ACCOUNT}`);
  }
  const realHome = await realpath(home).catch(() => home);
  const ssh = join(realHome, '.ssh');
  if (real === realHome || `${ssh}${sep}`.startsWith(`${real}${sep}`) || `${real}${sep}`.startsWith(`${ssh}${sep}`)) {
    return finding('job-root', 'error', `${root} is the home dir, holds ~/.ssh, or is inside it`, 'use a dedicated directory such as ~/mint-jobs');
  }
  const mode = await modeCheck('job-root', real, 'chmod 700');
  return mode.status === 'ok' ? { ...mode, detail: `${real} is a private directory` } : mode;
}

type Account = { username: string; shell: string } | { error: string };

/** This process's account from the passwd database; a uid without an entry has none. */
function whoami(): Account {
  try {
    const { username, shell } = userInfo();
    return { username, shell: shell ?? '' };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

type Text = { state: 'read'; text: string } | { state: 'missing' } | { state: 'unreadable'; why: string };

async function readText(path: string): Promise<Text> {
  try {
    return { state: 'read', text: await readFile(path, 'utf8') };
  } catch (error) {
    return absent(error) ? { state: 'missing' } : { state: 'unreadable', why: code(error) };
  }
}

/** 'present', 'absent', or why it cannot be told (e.g. a parent directory this account cannot search). */
async function presence(path: string): Promise<'present' | 'absent' | { why: string }> {
  try {
    await access(path);
    return 'present';
  } catch (error) {
    return absent(error) ? 'absent' : { why: code(error) };
  }
}

/** The path is not there (or a parent is not a directory), as opposed to unreachable. */
function absent(error: unknown): boolean {
  const c = (error as NodeJS.ErrnoException).code;
  return c === 'ENOENT' || c === 'ENOTDIR';
}

function code(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  return e.code === 'EACCES' || e.code === 'EPERM' ? `${e.code}: permission denied` : (e.code ?? e.message);
}

async function exists(path: string): Promise<boolean> {
  return (await presence(path)) === 'present';
}

async function firstExisting(paths: string[]): Promise<string | undefined> {
  for (const p of paths) if (await exists(p)) return p;
  return undefined;
}
