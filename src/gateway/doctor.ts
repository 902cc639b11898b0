/**
 * `mint-gateway doctor`: what on the external computer can defeat a forced command, or break the
 * protocol, each with how to fix it.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile, realpath, stat } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { join, sep } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface DoctorCheck {
  check: string;
  ok: boolean;
  /** 'error' defeats the gateway or stops jobs; 'warning' weakens or slows it. */
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
}

export async function doctor(options: DoctorOptions): Promise<DoctorCheck[]> {
  const home = options.home ?? homedir();
  const checks: DoctorCheck[] = [];
  const add = (c: DoctorCheck): void => void checks.push(c);

  // ~/.ssh/rc runs before a forced command unless `restrict` or `no-user-rc` is on the key's line.
  const rc = join(home, '.ssh', 'rc');
  const keys = await readFile(options.authorizedKeys, 'utf8').catch(() => '');
  const ourLines = keys.split('\n').filter((l) => l.includes('mint-gateway:SHA256:'));
  if (await exists(rc)) {
    const covered = ourLines.length > 0 && ourLines.every((l) => /^(cert-authority,)?restrict\b|no-user-rc/.test(l));
    add({
      check: 'ssh-rc',
      ok: covered,
      severity: covered ? 'info' : 'error',
      detail: `${rc} exists${covered ? ' (the gateway line has restrict, so it does not run for MInt\'s key)' : ' and would run before the gateway'}`,
      ...(covered ? {} : { fix: 'reinstall with `mint-gateway install` (adds restrict) or remove ~/.ssh/rc' }),
    });
  } else add({ check: 'ssh-rc', ok: true, severity: 'info', detail: 'no ~/.ssh/rc' });

  add(
    ourLines.length === 0
      ? { check: 'authorized-key', ok: false, severity: 'error', detail: `no mint-gateway line in ${options.authorizedKeys}`, fix: 'run `mint-gateway install --key mint.pub ...`' }
      : ourLines.every((l) => /(^|,)restrict(,| )/.test(l) && l.includes(`command="${options.gatewayPath} `))
        ? { check: 'authorized-key', ok: true, severity: 'info', detail: `${ourLines.length} mint-gateway line(s), restricted and pinned to ${options.gatewayPath}` }
        : { check: 'authorized-key', ok: false, severity: 'error', detail: 'a mint-gateway line lacks restrict or points at another gateway path', fix: 'rerun `mint-gateway install` to rewrite it' },
  );

  add(await sshdSettings());
  add(await loginShell(options.shell ?? userInfo().shell ?? '/bin/sh', home));
  add(await modeCheck('authorized-keys-mode', options.authorizedKeys, 'chmod 600'));
  add(await modeCheck('ssh-dir-mode', join(home, '.ssh'), 'chmod 700'));
  add(await modeCheck('gateway-mode', options.gatewayPath, 'chmod 755 (and owned by this account)', true));
  add(await rootCheck(options.root, home));
  for (const tool of ['rsync', 'setsid', 'tail']) {
    const found = await firstExisting([`/usr/bin/${tool}`, `/bin/${tool}`]);
    add(found ? { check: `needs-${tool}`, ok: true, severity: 'info', detail: found } : { check: `needs-${tool}`, ok: false, severity: 'error', detail: `${tool} not found in /usr/bin or /bin`, fix: `install ${tool === 'setsid' ? 'util-linux' : tool === 'tail' ? 'coreutils' : tool}` });
  }
  const programOk = await access(options.program, constants.X_OK).then(() => true, () => false);
  add(programOk ? { check: 'program', ok: true, severity: 'info', detail: `${options.program} is executable` } : { check: 'program', ok: false, severity: 'error', detail: `${options.program} is missing or not executable`, fix: `chmod +x ${options.program}` });
  return checks;
}

// Read by the loader or the login shell before the gateway's own scrubbing can run.
const DANGEROUS_ENV = ['LD_PRELOAD', 'LD_LIBRARY_PATH', 'LD_AUDIT', 'BASH_ENV', 'ENV', 'PATH', 'IFS', 'SHELLOPTS', 'PS4', 'BASH_FUNC_x%%'];

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(name);
}

async function sshdSettings(): Promise<DoctorCheck> {
  let text: string;
  try {
    text = (await run('sshd', ['-T'], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } })).stdout;
  } catch {
    return { check: 'sshd-config', ok: true, severity: 'info', detail: 'could not read `sshd -T` (needs root); ask the admin that PermitUserEnvironment is no and AcceptEnv lists nothing dangerous' };
  }
  const get = (key: string): string[] => text.split('\n').filter((l) => l.startsWith(`${key} `)).map((l) => l.slice(key.length + 1));
  const problems: string[] = [];
  if (get('permituserenvironment').some((v) => v !== 'no')) problems.push('PermitUserEnvironment is on (environment= in keys could set LD_PRELOAD)');
  const accept = get('acceptenv').join(' ').trim();
  const risky = accept.split(/\s+/).filter((pattern) => pattern && DANGEROUS_ENV.some((name) => globMatch(pattern, name)));
  if (risky.length) problems.push(`AcceptEnv ${risky.join(' ')} lets clients set variables that run code before the gateway (${DANGEROUS_ENV.filter((n) => risky.some((p) => globMatch(p, n))).join(', ')})`);
  return problems.length
    ? { check: 'sshd-config', ok: false, severity: 'error', detail: problems.join('; '), fix: 'set PermitUserEnvironment no and narrow AcceptEnv in sshd_config' }
    : { check: 'sshd-config', ok: true, severity: 'info', detail: `PermitUserEnvironment no; AcceptEnv ${accept || '(none)'}` };
}

/** sshd runs the forced command through the login shell; a shell that prints breaks the protocol. */
async function loginShell(shell: string, home: string): Promise<DoctorCheck> {
  const started = performance.now();
  try {
    const { stdout, stderr } = await run(shell, ['-c', 'true'], {
      env: { HOME: home, SSH_CLIENT: '127.0.0.1 22 22', SSH_CONNECTION: '127.0.0.1 22 127.0.0.1 22', PATH: '/usr/bin:/bin', USER: userInfo().username },
      cwd: home,
    });
    const ms = performance.now() - started;
    if (stdout || stderr) {
      return { check: 'login-shell', ok: false, severity: 'error', detail: `${shell} prints at start-up: ${JSON.stringify((stdout + stderr).slice(0, 120))}`, fix: 'make the startup files quiet for non-interactive shells, or chsh -s /bin/sh for this account' };
    }
    const slow = ms > 30;
    return {
      check: 'login-shell',
      ok: true,
      severity: slow ? 'warning' : 'info',
      detail: `${shell} starts silently in ${ms.toFixed(0)} ms${slow ? ' (every gateway verb pays this)' : ''}`,
      ...(slow ? { fix: 'chsh -s /bin/sh for the MInt account: its startup files are not read then' } : {}),
    };
  } catch (error) {
    return { check: 'login-shell', ok: false, severity: 'error', detail: `${shell} -c true failed: ${(error as Error).message}`, fix: 'fix the account\'s shell or its startup files' };
  }
}

async function modeCheck(check: string, path: string, fix: string, executable = false): Promise<DoctorCheck> {
  try {
    const info = await stat(path);
    const uid = process.getuid?.();
    const writableByOthers = (info.mode & 0o022) !== 0;
    const wrongOwner = uid !== undefined && info.uid !== uid && info.uid !== 0;
    const notExec = executable && (info.mode & 0o100) === 0;
    if (writableByOthers || wrongOwner || notExec) {
      const why = [writableByOthers && 'writable by group or others', wrongOwner && 'owned by another user', notExec && 'not executable'].filter(Boolean).join(', ');
      return { check, ok: false, severity: 'error', detail: `${path} is ${why}`, fix: `${fix} ${path}` };
    }
    return { check, ok: true, severity: 'info', detail: `${path} mode ${(info.mode & 0o777).toString(8)}` };
  } catch {
    return { check, ok: false, severity: 'error', detail: `${path} does not exist`, fix: 'run `mint-gateway install`' };
  }
}

async function rootCheck(root: string, home: string): Promise<DoctorCheck> {
  let real: string;
  try {
    real = await realpath(root);
  } catch {
    return { check: 'job-root', ok: false, severity: 'error', detail: `${root} does not exist`, fix: `mkdir -m 700 ${root}` };
  }
  const realHome = await realpath(home).catch(() => home);
  const ssh = join(realHome, '.ssh');
  if (real === realHome || `${ssh}${sep}`.startsWith(`${real}${sep}`) || `${real}${sep}`.startsWith(`${ssh}${sep}`)) {
    return { check: 'job-root', ok: false, severity: 'error', detail: `${root} is the home dir, holds ~/.ssh, or is inside it`, fix: 'use a dedicated directory such as ~/mint-jobs' };
  }
  const mode = await modeCheck('job-root', real, 'chmod 700');
  return mode.ok ? { ...mode, detail: `${real} is a private directory` } : mode;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

async function firstExisting(paths: string[]): Promise<string | undefined> {
  for (const p of paths) if (await exists(p)) return p;
  return undefined;
}
