// Where the CPU goes during one transfer: samples /proc every 50 ms and sums user+system time per
// kind of process, for this process and its descendants (rsync, shims, ssh) and the sandbox's sshd
// and its descendants (sshd sessions, the remote rsync). A process that exits between two samples
// loses its last <50 ms, so the totals are slight underestimates; this process's own figure
// includes the sampler's cost (see the rsync run's figure for it). Linux only.
import { readdirSync, readFileSync } from 'node:fs';

// Synchronous reads on purpose: a few dozen small /proc files per sample cost far less CPU this way
// than through the libuv thread pool, and the sampler must not be what it measures.
const readFile = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};
const readdir = (path) => {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
};

const TICK_MS = 10; // USER_HZ is 100 on Linux

function readStat(pid) {
  const stat = readFile(`/proc/${pid}/stat`);
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const f = stat.slice(close + 2).split(' ');
  return { comm: stat.slice(stat.indexOf('(') + 1, close), cpuMs: (Number(f[11]) + Number(f[12])) * TICK_MS };
}

/** The roots and all their descendants (walked through /proc/PID/task/TID/children), with CPU times. */
function snapshotSync(roots) {
  const procs = new Map();
  const queue = [...roots];
  while (queue.length > 0 && procs.size < 5000) {
    const pid = queue.shift();
    if (procs.has(pid)) continue;
    const info = readStat(pid);
    if (!info) continue;
    procs.set(pid, info);
    for (const tid of readdir(`/proc/${pid}/task`)) {
      const children = readFile(`/proc/${pid}/task/${tid}/children`);
      for (const c of children.split(' ')) if (c.trim()) queue.push(Number(c));
    }
  }
  return procs;
}

function classify(pid, info, cmdline) {
  if (pid === process.pid) return 'bench process (ssh2 + rsync bridge)';
  if (info.comm === 'node') return cmdline.includes('rsh-shim') ? 'rsh shim (node)' : 'other node';
  if (info.comm === 'rsync') return cmdline.includes('--server') ? 'rsync (remote side)' : 'rsync (local)';
  if (info.comm === 'sshd') return 'sshd';
  if (info.comm === 'ssh') return 'ssh client';
  return info.comm;
}

/** Sum of VmRSS over a process and all its descendants. */
export function treeRss(rootPid) {
  let total = 0;
  let count = 0;
  for (const pid of snapshotSync([rootPid]).keys()) {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFile(`/proc/${pid}/status`));
    if (m) {
      total += Number(m[1]) * 1024;
      count += 1;
    }
  }
  return { total, count };
}

/** Runs fn while sampling; returns { value, wallMs, cpuMs: { kind: ms } }. */
export async function withCpuProfile(rootPids, fn) {
  if (process.platform !== 'linux') return { value: await fn(), cpuMs: undefined };
  const roots = rootPids.filter(Boolean);
  const base = snapshotSync(roots);
  const ours = new Map(); // pid -> { kind, startMs, lastMs }
  let stop = false;
  const sample = async () => {
    for (const [pid, info] of snapshotSync(roots)) {
      let known = ours.get(pid);
      if (!known) {
        const cmdline = readFile(`/proc/${pid}/cmdline`).replace(/\0/g, ' ');
        // A process that existed before the transfer only counts what it used since.
        known = { kind: classify(pid, info, cmdline), startMs: base.get(pid)?.cpuMs ?? 0, lastMs: info.cpuMs };
        ours.set(pid, known);
      }
      known.lastMs = info.cpuMs;
    }
  };
  const loop = (async () => {
    while (!stop) {
      await sample();
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const t0 = performance.now();
  let value;
  try {
    value = await fn();
  } finally {
    stop = true;
    await loop;
  }
  const wallMs = performance.now() - t0;
  await sample();
  const cpuMs = {};
  for (const p of ours.values()) cpuMs[p.kind] = (cpuMs[p.kind] ?? 0) + Math.max(0, p.lastMs - p.startMs);
  return { value, wallMs, cpuMs };
}
