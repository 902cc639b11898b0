// Child processes for the bench: every one gets its own process group, a hard timeout, and a place
// in a registry so that an exception, a timeout or Ctrl-C never leaves one behind.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';

/** pid -> label of every child still running. */
const live = new Map();
/** Set once clean-up has begun (Ctrl-C): from then on nothing new is started. */
let aborting = false;

export function abortAll() {
  aborting = true;
}
/** Last-in first-out clean-up steps (sshd, ControlMasters, temp dirs, throwaway users). */
const cleanups = [];

export function liveChildren() {
  return [...live.entries()].map(([pid, label]) => ({ pid, label }));
}

function killGroup(pid, signal = 'SIGKILL') {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Kills every child process the bench started and has not seen exit (by pid, process group). */
export function killAllChildren() {
  for (const pid of live.keys()) killGroup(pid);
  live.clear();
}

/**
 * Runs a command to completion. Resolves with { code, signal, stdout, stderr, ms }; rejects on a
 * non-zero exit unless check is false. stdinFile feeds a file as stdin (for `ssh host 'cat > f'`).
 */
export function run(cmd, args, options = {}) {
  const { timeoutMs = 120_000, stdinFile, env, cwd, check = true, maxOutput = 16 * 1024 * 1024 } = options;
  return new Promise((resolve, reject) => {
    if (aborting) {
      reject(new Error('bench is stopping: not starting ' + cmd));
      return;
    }
    let fd;
    let stdin = 'ignore';
    try {
      if (stdinFile) {
        fd = openSync(stdinFile, 'r');
        stdin = fd;
      }
    } catch (error) {
      reject(error);
      return;
    }
    const started = performance.now();
    let child;
    try {
      child = spawn(cmd, args, { stdio: [stdin, 'pipe', 'pipe'], detached: true, env: env ?? process.env, cwd });
    } catch (error) {
      if (fd !== undefined) closeSync(fd);
      reject(error);
      return;
    }
    if (fd !== undefined) closeSync(fd);
    const label = `${cmd} ${args.join(' ')}`.slice(0, 200);
    if (child.pid) live.set(child.pid, label);
    const out = [];
    const err = [];
    let outSize = 0;
    let errSize = 0;
    child.stdout.on('data', (d) => {
      outSize += d.length;
      if (outSize <= maxOutput) out.push(d);
    });
    child.stderr.on('data', (d) => {
      errSize += d.length;
      if (errSize <= maxOutput) err.push(d);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid) killGroup(child.pid);
    }, timeoutMs);
    // A daemonised grandchild (an ssh ControlPersist master) could hold our pipes open: once the
    // child itself has exited, give the pipes a moment and then stop waiting for them.
    let exitTimer;
    child.on('exit', () => {
      exitTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, 2000);
    });
    let settled = false;
    const finish = (error, result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(exitTimer);
      if (child.pid) live.delete(child.pid);
      if (error) reject(error);
      else resolve(result);
    };
    child.on('error', (error) => finish(error));
    child.on('close', (code, signal) => {
      const result = {
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: performance.now() - started,
      };
      if (timedOut) {
        finish(Object.assign(new Error(`timed out after ${timeoutMs} ms: ${label}`), { result }));
      } else if (check && code !== 0) {
        const tail = result.stderr.trim().split('\n').slice(-3).join(' | ');
        finish(Object.assign(new Error(`exit ${code ?? signal}: ${label}${tail ? `: ${tail}` : ''}`), { result }));
      } else {
        finish(undefined, result);
      }
    });
  });
}

/** Starts a long-lived child (sshd, ssh -M); the caller stops it with stopChild. */
export function startChild(cmd, args, options = {}) {
  if (aborting) throw new Error('bench is stopping: not starting ' + cmd);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true, ...options });
  if (child.pid) live.set(child.pid, `${cmd} ${args.join(' ')}`.slice(0, 200));
  let stderr = '';
  child.stderr?.on('data', (d) => {
    if (stderr.length < 65536) stderr += d.toString();
  });
  child.on('exit', () => {
    if (child.pid) live.delete(child.pid);
  });
  child.on('error', () => undefined);
  return { child, stderr: () => stderr };
}

export async function stopChild(child, graceMs = 2000) {
  if (!child || child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise((r) => child.once('exit', r));
  killGroup(child.pid, 'SIGTERM');
  await Promise.race([exited, sleep(graceMs)]);
  if (child.exitCode === null && child.signalCode === null) {
    killGroup(child.pid, 'SIGKILL');
    await Promise.race([exited, sleep(graceMs)]);
  }
}

let cleanupLog = (message) => process.stderr.write(`${message}\n`);
const inFlight = new Set();
let cleaning;

async function runOne({ label, fn }) {
  if (process.env.BENCH_DEBUG) cleanupLog(`clean-up: ${label}`);
  let timer;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('clean-up step timed out after 30 s')), 30_000);
      }),
    ]);
  } catch (error) {
    cleanupLog(`clean-up "${label}" failed: ${error.message}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Registers a clean-up step; once clean-up has begun, a late registration runs at once. */
export function onCleanup(label, fn) {
  if (!aborting) {
    cleanups.push({ label, fn });
    return;
  }
  const p = runOne({ label, fn });
  inFlight.add(p);
  void p.finally(() => inFlight.delete(p));
}

/**
 * Runs every registered clean-up step, newest first; each is bounded and none stops the others.
 * Every caller (the normal end, a signal) gets the same run, and it ends only when late
 * registrations have finished too.
 */
export function runCleanups(log) {
  if (log) cleanupLog = log;
  cleaning ??= (async () => {
    aborting = true;
    killAllChildren();
    while (cleanups.length > 0) await runOne(cleanups.pop());
    const deadline = Date.now() + 30_000;
    while (inFlight.size > 0 && Date.now() < deadline) await Promise.race([...inFlight, sleep(100)]);
    killAllChildren();
  })();
  return cleaning;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

export function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Kills processes whose command line contains `marker` (a path unique to this run, such as the
 * bench's mkdtemp dir): the ssh ControlMasters the bench's ssh commands forked into the background,
 * which are no children of ours. Found by that marker, killed by pid.
 */
export function killByMarker(marker) {
  let killed = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!cmdline.includes(marker)) continue;
    try {
      process.kill(Number(entry), 'SIGTERM');
      killed += 1;
    } catch {
      // gone
    }
  }
  return killed;
}
