#!/usr/bin/env node
// `npm run bench`: speed and scale of mint-ssh-exec, each figure next to an OpenSSH anchor measured
// in the same run against the same private sshd. See bench/README.md for what is measured and how
// to read the table. Options: --quick, --only B1,B2,..., --plain-shell-user, --out FILE, --help.
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, rm, stat, writeFile, readdir, open } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { distReady, load, openLink, timedUpload } from './lib/mint.mjs';
import { treeRss, withCpuProfile } from './lib/cpu.mjs';
import { OpenSsh } from './lib/openssh.mjs';
import { plainUserSupported, startPlainUser } from './lib/plain-user.mjs';
import { abortAll, killByMarker, liveChildren, onCleanup, run, runCleanups, sleep, startChild, stopChild } from './lib/proc.mjs';
import { fmtBytes, fmtMs, mbPerS, median, ratio, round, summary, table } from './lib/stats.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ALL = ['B1', 'B2', 'B3', 'B4', 'B5'];

// ------------------------------------------------------------------------------------------------
// Options

function parseOptions(argv) {
  const o = { quick: false, only: new Set(ALL), plainShellUser: false, out: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--plain-shell-user') o.plainShellUser = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const value = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      const ids = String(value ?? '')
        .split(',')
        .map((s) => s.trim().toUpperCase())
        .filter(Boolean);
      const bad = ids.filter((id) => !ALL.includes(id));
      if (ids.length === 0 || bad.length) usage(`--only takes a comma-separated list of ${ALL.join(', ')}${bad.length ? `; unknown: ${bad.join(', ')}` : ''}`);
      o.only = new Set(ids);
    } else if (a === '--out' || a.startsWith('--out=')) {
      o.out = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (!o.out) usage('--out needs a file name');
    } else if (a === '--help' || a === '-h') usage();
    else usage(`unknown option ${a}`);
  }
  return o;
}

function usage(problem) {
  const text = [
    'usage: node bench/run.mjs [--quick] [--only B1,B2,B3,B4,B5] [--plain-shell-user] [--out FILE]',
    '  --quick             smaller sizes and fewer repetitions (a smoke run, ~1-2 min)',
    '  --only LIST         run only these benchmarks',
    '  --plain-shell-user  also run B1 against a throwaway account whose shell is /bin/sh (root + useradd)',
    '  --out FILE          JSON output (default bench/results/latest.json, or latest-quick.json with --quick)',
    'environment: MINT_BENCH_PULL_BYTES=N[K|M|G]  the size of B5\'s big input (default 1G, 64M with --quick)',
  ].join('\n');
  if (problem) {
    process.stderr.write(`bench: ${problem}\n${text}\n`);
    process.exit(2);
  }
  process.stdout.write(`${text}\n`);
  process.exit(0);
}

const opts = parseOptions(process.argv.slice(2));

const CONFIG = opts.quick
  ? { b1Reps: 3, verbReps: 3, b2Bytes: 64 * 1024 ** 2, b2Reps: 2, b3Files: 500, b3Reps: 2, b4Jobs: 16, b4Reps: 1, budgetMs: 5 * 60_000 }
  : { b1Reps: 7, verbReps: 7, b2Bytes: 1024 ** 3, b2Reps: 5, b3Files: 5000, b3Reps: 5, b4Jobs: 64, b4Reps: 3, budgetMs: 8 * 60_000 };
const B3_FILE_BYTES = 4096;
// B5's big input: 1 GiB as the issue asks, smaller for a quick look (MINT_BENCH_PULL_BYTES=256M).
CONFIG.b5Reps = opts.quick ? 2 : 3;
CONFIG.b5LatencyReps = opts.quick ? 3 : 7;
CONFIG.b5Bytes = pullBytes(process.env.MINT_BENCH_PULL_BYTES) ?? (opts.quick ? 64 * 1024 ** 2 : 1024 ** 3);

function pullBytes(text) {
  if (text === undefined || text === '') return undefined;
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(text.trim());
  if (!m || Number(m[1]) === 0) usage(`MINT_BENCH_PULL_BYTES takes a size such as 256M or 1G, not ${JSON.stringify(text)}`);
  return Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
}
const MIN_FREE_FOR_FULL_B2 = 5 * 1024 ** 3;

// ------------------------------------------------------------------------------------------------
// Bookkeeping

const startedAt = new Date();
const t0 = performance.now();
const results = {
  schema: 1,
  startedAt: startedAt.toISOString(),
  options: { quick: opts.quick, only: [...opts.only], plainShellUser: opts.plainShellUser },
  config: { ...CONFIG, b3FileBytes: B3_FILE_BYTES },
  machine: {},
  notes: [],
  errors: [],
  targets: [],
};
const notes = results.notes;

function log(message) {
  const s = ((performance.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${s}s] ${message}\n`);
}

/** Repetitions, bounded by count and by the time budget (always at least one). */
async function reps(label, count, fn) {
  let lastMs = 0;
  for (let i = 0; i < count; i++) {
    // Stop early rather than blow the budget: a repetition starts only if one more like the last fits.
    if (i > 0 && performance.now() - t0 + lastMs > CONFIG.budgetMs) {
      notes.push(`${label}: stopped after ${i} of ${count} repetitions (time budget of ${CONFIG.budgetMs / 60000} min reached)`);
      log(`${label}: time budget reached, ${i} repetitions kept`);
      return;
    }
    const started = performance.now();
    await fn(i);
    lastMs = performance.now() - started;
  }
}

function target(t) {
  results.targets.push(t);
}

async function timed(fn) {
  const s = performance.now();
  const value = await fn();
  return { ms: performance.now() - s, value };
}

async function writeRandomFile(path, bytes) {
  const handle = await open(path, 'w');
  try {
    const chunk = 16 * 1024 * 1024;
    for (let done = 0; done < bytes; done += chunk) {
      await handle.write(randomBytes(Math.min(chunk, bytes - done)));
    }
  } finally {
    await handle.close();
  }
}

async function fileSize(path) {
  return (await stat(path).catch(() => ({ size: -1 }))).size;
}

async function syncDisk() {
  await run('sync', [], { timeoutMs: 120_000, check: false });
}

async function freeBytes(path) {
  const r = await run('df', ['-Pk', path], { timeoutMs: 10_000 });
  const fields = r.stdout.trim().split('\n').pop().split(/\s+/);
  return Number(fields[3]) * 1024;
}

// ------------------------------------------------------------------------------------------------
// The environment: sandbox sshd, the anchor key beside the gateway key, the trivial program.

const TRIVIAL_PROGRAM = "#!/bin/sh\n# B1/B4's program: almost nothing, one result file.\nprintf 'done\\n' > result.txt\n";
const LOG_NAME = 'remote_program_exec.log';

async function machineInfo() {
  const version = async (cmd, args) => {
    const r = await run(cmd, args, { check: false, timeoutMs: 10_000 }).catch(() => undefined);
    return r ? `${r.stdout}${r.stderr}`.trim().split('\n')[0] : 'unknown';
  };
  const sshdPath = ['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/sbin/sshd'].find((p) => existsSync(p));
  return {
    hostname: os.hostname(),
    kernel: os.release(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memMiB: Math.round(os.totalmem() / 1024 ** 2),
    node: process.version,
    ssh: await version('ssh', ['-V']),
    sshd: sshdPath ? await version(sshdPath, ['-V']) : 'missing',
    rsync: await version('rsync', ['--version']),
    user: os.userInfo().username,
    loginShell: os.userInfo().shell,
    loadavgStart: os.loadavg().map((x) => round(x, 2)),
  };
}

/** An "env" is a target account: our host profile plus OpenSSH anchors on the same sshd. */
async function sandboxEnv(workDir, program) {
  const { startSandbox } = await load();
  const sandbox = await startSandbox({ program });
  onCleanup('sandbox', () => sandbox.stop());
  // The sandbox's key is pinned to the gateway (restrict,command=...). The OpenSSH anchors need
  // plain commands, so a second, unrestricted key for the same user goes into the same file: same
  // sshd binary, same config, same account, same login shell.
  const anchorKey = join(workDir, 'anchor_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-openssh-anchor', '-f', anchorKey]);
  await appendFile(sandbox.authorizedKeys, await readFile(`${anchorKey}.pub`, 'utf8'));
  const anchorRoot = join(sandbox.dir, 'anchor');
  await mkdir(anchorRoot, { mode: 0o700 });
  return {
    label: `sandbox: ${sandbox.user}, login shell ${os.userInfo().shell}`,
    tag: 'sandbox',
    user: sandbox.user,
    shell: os.userInfo().shell,
    home: os.userInfo().homedir,
    host: sandbox.host,
    ossh: new OpenSsh({ user: sandbox.user, port: sandbox.port, key: anchorKey, knownHosts: sandbox.knownHosts }),
    anchorRoot,
    program: sandbox.program,
    root: sandbox.root,
    gatewayPath: sandbox.gatewayPath,
    sshdLog: () => sandbox.sshdLog(),
    sshdPid: async () => Number((await readFile(join(sandbox.dir, 'sshd.pid'), 'utf8').catch(() => '')).trim()) || undefined,
  };
}

async function plainEnv(workDir, program) {
  const plain = await startPlainUser({ workDir, program, log });
  let stopping;
  const stop = () => (stopping ??= plain.stop()); // once, whether called early or at exit
  onCleanup(`throwaway user ${plain.user}`, stop);
  return {
    stop,
    label: `throwaway user ${plain.user}, login shell /bin/sh`,
    tag: 'plain',
    user: plain.user,
    shell: '/bin/sh',
    home: `/home/${plain.user}`,
    host: plain.host,
    ossh: new OpenSsh({ user: plain.user, port: plain.port, key: plain.plainKey, knownHosts: plain.knownHosts }),
    anchorRoot: plain.anchorRoot,
    program: plain.program,
    root: plain.root,
    gatewayPath: plain.gatewayPath,
    sshdLog: () => plain.sshdLog(),
  };
}

// ------------------------------------------------------------------------------------------------
// B1: a trivial job end to end

async function b1(env, workDir) {
  const { runRemote } = await load();
  const dir = join(workDir, `b1-${env.tag}`);
  await mkdir(dir, { recursive: true });
  const input = join(dir, 'input.dat');
  await writeRandomFile(input, 1024);
  const { ossh } = env;
  const q = (s) => `'${s}'`;
  const runCmd = (remoteDir) => `cd ${q(remoteDir)} && ${q(env.program)} > ${LOG_NAME} 2>&1`;
  let n = 0;
  const fresh = async (name) => {
    n += 1;
    const out = join(dir, `out-${name}-${n}`);
    await mkdir(out, { recursive: true });
    return { out, remoteDir: join(env.anchorRoot, `b1-${name}-${n}`) };
  };
  const verify = async (out, what) => {
    const text = await readFile(join(out, 'result.txt'), 'utf8').catch(() => '');
    if (text !== 'done\n') throw new Error(`${what}: result.txt missing or wrong in ${out}`);
  };
  const tidy = async (out, remoteDir) => {
    await rm(out, { recursive: true, force: true });
    if (remoteDir) await rm(remoteDir, { recursive: true, force: true });
  };

  const osshDefaultKex = new OpenSsh({ ...ossh.target, kex: 'default' });
  const lib = join(HERE, 'lib');
  const node = (script, args) => run(process.execPath, [join(lib, script), ...args], { timeoutMs: 120_000 });
  const warmMaster = join(workDir, `cm-warm-${env.tag}`);
  let warmPid;
  const variants = {
    mint: async () => {
      const { out } = await fresh('mint');
      const s = performance.now();
      const r = await runRemote({ host: env.host, inputs: [input], outputDir: out, cleanup: 'always', timeoutMs: 120_000 });
      const ms = performance.now() - s;
      if (r.exitCode !== 0 || !r.files.includes('result.txt')) throw new Error(`runRemote: exit ${r.exitCode}, files ${r.files}`);
      await verify(out, 'runRemote');
      await tidy(out);
      return { ms, steps: { ...r.timings }, connections: r.connections };
    },
    mintRsync: async () => {
      // The same, every file by rsync (MINT_SSH_EXEC_INLINE=0), as before inline streams: what
      // jobx and takex save (info).
      const { out } = await fresh('mintrsync');
      process.env.MINT_SSH_EXEC_INLINE = '0';
      try {
        const s = performance.now();
        const r = await runRemote({ host: env.host, inputs: [input], outputDir: out, cleanup: 'always', timeoutMs: 120_000 });
        const ms = performance.now() - s;
        if (r.exitCode !== 0 || !r.files.includes('result.txt')) throw new Error(`runRemote (rsync): exit ${r.exitCode}, files ${r.files}`);
        await verify(out, 'runRemote (rsync)');
        await tidy(out);
        return { ms, steps: { ...r.timings } };
      } finally {
        delete process.env.MINT_SSH_EXEC_INLINE;
      }
    },
    mintFresh: async () => {
      // What a MInt module pays: a fresh node per job, the package imported by name (the bundle).
      const { out } = await fresh('mintfresh');
      const { ms } = await node('fresh-mint.mjs', [JSON.stringify(env.host), input, out]);
      await verify(out, 'runRemote in a fresh process');
      await tidy(out);
      return { ms, steps: {} };
    },
    nodeSsh: async () => {
      // The same job as a node-ssh user writes it, fresh process, same sshd, the unrestricted key.
      const { out, remoteDir } = await fresh('nodessh');
      const target = { host: '127.0.0.1', port: ossh.target.port, username: ossh.target.user, privateKeyPath: ossh.target.key };
      const { ms } = await node('fresh-node-ssh.mjs', [JSON.stringify(target), remoteDir, env.program, input, out]);
      await verify(out, 'node-ssh');
      await tidy(out, remoteDir);
      return { ms, steps: {} };
    },
    bareNode: async () => ({ ms: (await node('empty.mjs', [])).ms, steps: {} }),
    importOnly: async () => ({ ms: (await node('fresh-import.mjs', [])).ms, steps: {} }),
    mintFlowDefaultKex: async () => {
      // MInt's flow with OpenSSH's default key exchange (sntrup761x25519): what its scripts really get.
      const { out, remoteDir } = await fresh('mintflowkex');
      const s = performance.now();
      await osshDefaultKex.ssh(`mkdir -p ${q(remoteDir)}`);
      await osshDefaultKex.rsync(['-av', input, osshDefaultKex.remote(`${remoteDir}/`)]);
      await osshDefaultKex.ssh(runCmd(remoteDir));
      await osshDefaultKex.rsync(['-av', osshDefaultKex.remote(`${remoteDir}/`), `${out}/`]);
      const ms = performance.now() - s;
      await verify(out, 'MInt flow, default kex');
      await tidy(out, remoteDir);
      return { ms, steps: {} };
    },
    mintFlow: async () => {
      // MInt's flow today: a connection per command.
      const { out, remoteDir } = await fresh('mintflow');
      const steps = {};
      const s = performance.now();
      steps.mkdir = (await ossh.ssh(`mkdir -p ${q(remoteDir)}`)).ms;
      steps.upload = (await ossh.rsync(['-av', input, ossh.remote(`${remoteDir}/`)])).ms;
      steps.run = (await ossh.ssh(runCmd(remoteDir))).ms;
      steps.download = (await ossh.rsync(['-av', ossh.remote(`${remoteDir}/`), `${out}/`])).ms;
      const ms = performance.now() - s;
      await verify(out, 'MInt flow');
      await tidy(out, remoteDir);
      return { ms, steps };
    },
    cmCold: async () => {
      // Hand-tuned: one master for the job (opened by the first command), one rsync each way.
      const { out, remoteDir } = await fresh('cmcold');
      const cp = join(workDir, `cm-cold-${env.tag}-${n}`);
      const extra = OpenSsh.controlOptions(cp, 30);
      const steps = {};
      try {
        const s = performance.now();
        steps.upload = (await ossh.rsync(['-a', input, ossh.remote(`${remoteDir}/`)], extra)).ms;
        steps.run = (await ossh.ssh(runCmd(remoteDir), extra)).ms;
        steps.download = (await ossh.rsync(['-a', ossh.remote(`${remoteDir}/`), `${out}/`], extra)).ms;
        const ms = performance.now() - s;
        await verify(out, 'ControlMaster flow');
        return { ms, steps };
      } finally {
        await ossh.closeMaster(cp);
        await tidy(out, remoteDir);
      }
    },
    cmWarm: async () => {
      // The same with the master already open (ControlPersist from an earlier job): no handshake.
      const { out, remoteDir } = await fresh('cmwarm');
      const extra = OpenSsh.controlOptions(warmMaster, 60);
      const steps = {};
      const s = performance.now();
      steps.upload = (await ossh.rsync(['-a', input, ossh.remote(`${remoteDir}/`)], extra)).ms;
      steps.run = (await ossh.ssh(runCmd(remoteDir), extra)).ms;
      steps.download = (await ossh.rsync(['-a', ossh.remote(`${remoteDir}/`), `${out}/`], extra)).ms;
      const ms = performance.now() - s;
      await verify(out, 'ControlMaster flow (warm)');
      await tidy(out, remoteDir);
      return { ms, steps };
    },
  };
  const samples = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  try {
    warmPid = await env.ossh.openMaster(warmMaster, 60);
    onCleanup(`ControlMaster ${warmMaster}`, () => env.ossh.closeMaster(warmMaster, warmPid));
    // One unrecorded round of each: page cache, sshd's first fork, Node's module loading.
    for (const fn of Object.values(variants)) await fn();
    const names = Object.keys(variants);
    await reps(`B1 (${env.tag})`, CONFIG.b1Reps, async (i) => {
      // Rotate the order so that no variant always runs first after a pause.
      for (let k = 0; k < names.length; k++) {
        const name = names[(i + k) % names.length];
        samples[name].push(await variants[name]());
      }
      log(`B1 ${env.tag} rep ${i + 1}/${CONFIG.b1Reps}: ${names.map((nm) => `${nm} ${fmtMs(samples[nm].at(-1).ms)}`).join(', ')}`);
    });
  } finally {
    await env.ossh.closeMaster(warmMaster, warmPid);
    await rm(dir, { recursive: true, force: true });
  }
  const stepSummary = (list) => {
    const keys = Object.keys(list[0]?.steps ?? {});
    return Object.fromEntries(keys.map((k) => [k, round(median(list.map((x) => x.steps[k])))]));
  };
  const out = Object.fromEntries(
    Object.entries(samples).map(([k, list]) => [k, { ...summary(list.map((x) => x.ms)), stepsMedianMs: stepSummary(list) }]),
  );
  // Paired within a round (same load): the import's cost over a bare node start.
  const diffs = samples.importOnly.map((x, i) => x.ms - samples.bareNode[i].ms);
  out.importCost = { ...summary(diffs), stepsMedianMs: {} };
  return out;
}

// ------------------------------------------------------------------------------------------------
// Per-verb cost: what one command costs, and how much of it is the login shell.

async function verbCosts(env, workDir) {
  const dir = join(workDir, `verbs-${env.tag}`);
  await mkdir(dir, { recursive: true });
  const input = join(dir, 'input.dat');
  await writeRandomFile(input, 1024);
  const mint = { probe: [], put: [], start: [], status: [], logs: [], get: [], rm: [], run: [], take: [], putx: [], jobx: [], takex: [], refused_verb: [] };
  const { inlineUpload } = await load();
  const inline = inlineUpload([input]);
  const link = await openLink(env.host);
  try {
    for (let i = 0; i < CONFIG.verbReps; i++) {
      mint.probe.push((await timed(() => link.gateway.probe())).ms);
      const jobId = randomUUID();
      mint.put.push((await timed(() => link.gateway.put([input], { jobId }))).ms);
      mint.start.push((await timed(() => link.gateway.start(jobId, []))).ms);
      // Let the program finish so that status and logs are timed as fixed costs, not as waiting.
      for (let k = 0; k < 100; k++) {
        const st = await link.gateway.status(jobId);
        if (st.state !== 'running') break;
        await sleep(50);
      }
      mint.status.push((await timed(() => link.gateway.status(jobId))).ms);
      mint.logs.push((await timed(() => link.gateway.logs(jobId, 0, () => undefined))).ms);
      const out = join(dir, `out-${i}`);
      await mkdir(out, { recursive: true });
      mint.get.push((await timed(() => link.gateway.get(out, { jobId }))).ms);
      mint.rm.push((await timed(() => link.gateway.remove(jobId))).ms);
      // What a job really sends after put: run (start + follow to the end) and take (get + removal).
      const second = randomUUID();
      await link.gateway.put([input], { jobId: second });
      mint.run.push((await timed(() => link.gateway.run(second, [], () => undefined, () => undefined))).ms);
      const out2 = join(dir, `out2-${i}`);
      await mkdir(out2, { recursive: true });
      mint.take.push((await timed(() => link.gateway.take(out2, { jobId: second }))).ms);
      // A small job's verbs: putx (the inputs inline), jobx (inputs and run in one), takex (results inline).
      const third = randomUUID();
      mint.putx.push((await timed(() => link.gateway.put([input], { jobId: third, inline }))).ms);
      await link.gateway.remove(third);
      const fourth = randomUUID();
      mint.jobx.push((await timed(() => link.gateway.run(fourth, [], () => undefined, () => undefined, undefined, { inline, inputs: inline.entries }))).ms);
      const out3 = join(dir, `out3-${i}`);
      await mkdir(out3, { recursive: true });
      mint.takex.push((await timed(() => link.gateway.fetch(out3, { jobId: fourth, remove: true }))).ms);
      // An exec the gateway refuses at once (unknown verb): channel + login shell + gateway start.
      mint.refused_verb.push(
        (await timed(() => link.gateway.connection.exec('mint-gw nosuchverb').then((ch) => new Promise((r) => {
          ch.on('close', r);
          ch.resume();
          ch.stderr.resume();
        })))).ms,
      );
    }
  } finally {
    await link.close();
  }

  const openssh = { cold_ssh_true: [], mux_ssh_true: [] };
  const cp = join(workDir, `cm-verbs-${env.tag}`);
  let pid;
  try {
    pid = await env.ossh.openMaster(cp, 60);
    for (let i = 0; i < CONFIG.verbReps; i++) {
      openssh.cold_ssh_true.push((await env.ossh.ssh('true')).ms);
      openssh.mux_ssh_true.push((await env.ossh.ssh('true', ['-o', `ControlPath=${cp}`])).ms);
    }
  } finally {
    await env.ossh.closeMaster(cp, pid);
  }

  // Without sshd: the login shell as sshd starts it (bash reads ~/.bashrc when SSH_CLIENT is set),
  // and the gateway script on its own.
  const local = { login_shell_as_sshd_runs_it: [], login_shell_without_rc: [], gateway_probe_alone: [], gateway_list_alone: [] };
  const baseEnv = { HOME: env.home, PATH: '/usr/local/bin:/usr/bin:/bin', USER: env.user, LOGNAME: env.user, SHELL: env.shell };
  const runuser = ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => existsSync(p));
  if (env.tag === 'plain' && !runuser) throw new Error('runuser not found (util-linux)');
  const asUser = env.tag === 'plain' ? [runuser, ['-u', env.user, '--']] : undefined;
  const exec = (args, extraEnv) =>
    asUser ? run('env', ['-i', ...Object.entries({ ...baseEnv, ...extraEnv }).map(([k, v]) => `${k}=${v}`), asUser[0], ...asUser[1], ...args])
      : run(args[0], args.slice(1), { env: { ...baseEnv, ...extraEnv } });
  for (let i = 0; i < CONFIG.verbReps; i++) {
    local.login_shell_as_sshd_runs_it.push((await exec([env.shell, '-c', 'true'], { SSH_CLIENT: '127.0.0.1 40000 22', SSH_CONNECTION: '127.0.0.1 40000 127.0.0.1 22' })).ms);
    local.login_shell_without_rc.push((await exec([env.shell, '-c', 'true'], {})).ms);
    const gw = ['/bin/sh', env.gatewayPath, '--root', env.root, '--program', env.program, '--key-name', 'bench-local'];
    local.gateway_probe_alone.push((await exec(gw, { SSH_ORIGINAL_COMMAND: 'mint-gw probe' })).ms);
    local.gateway_list_alone.push((await exec(gw, { SSH_ORIGINAL_COMMAND: 'mint-gw list' })).ms);
  }
  await rm(dir, { recursive: true, force: true });
  const sum = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, summary(v)]));
  return { mintVerbsOnWarmConnection: sum(mint), openssh: sum(openssh), localNoSshd: sum(local) };
}

// ------------------------------------------------------------------------------------------------
// B2: one big input

async function b2(env, workDir) {
  const dir = join(workDir, 'b2');
  await mkdir(dir, { recursive: true });
  let bytes = CONFIG.b2Bytes;
  const free = await freeBytes(dir);
  const out = { freeBytesAtStart: free };
  if (free < MIN_FREE_FOR_FULL_B2 && !opts.quick) {
    bytes = Math.max(64 * 1024 ** 2, Math.floor(free / 5 / (16 * 1024 ** 2)) * 16 * 1024 ** 2);
    notes.push(`B2: only ${fmtBytes(free)} free on ${dir}; input scaled down from ${fmtBytes(CONFIG.b2Bytes)} to ${fmtBytes(bytes)}`);
  }
  out.bytes = bytes;
  const file = join(dir, 'big.bin');
  onCleanup('B2 input file', () => rm(file, { force: true }));
  log(`B2: writing a ${fmtBytes(bytes)} random input`);
  await writeRandomFile(file, bytes);
  await syncDisk();
  await run('cat', [file], { timeoutMs: 300_000, maxOutput: 0 }); // into the page cache, for every variant alike
  const { ossh } = env;
  let n = 0;
  const variants = {
    mint: async () => {
      const r = await timedUpload(env.host, [file]);
      // The work dir is named by the job (mgw_check_job), not work/.
      const landed = join(env.root, r.jobId, r.jobId, 'big.bin');
      const size = await fileSize(landed);
      await rm(join(env.root, r.jobId), { recursive: true, force: true });
      if (size !== bytes) throw new Error(`runRemote upload: ${landed} has ${size} bytes, expected ${bytes}`);
      return { ms: r.totalMs, uploadOnlyMs: r.uploadMs, connectMs: r.connectMs };
    },
    rsync: async () => {
      const remoteDir = join(env.anchorRoot, `b2-rsync-${++n}`);
      const r = await ossh.rsync(['-a', file, ossh.remote(`${remoteDir}/`)], [], { timeoutMs: 600_000 });
      const size = await fileSize(join(remoteDir, 'big.bin'));
      await rm(remoteDir, { recursive: true, force: true });
      if (size !== bytes) throw new Error(`rsync: ${size} bytes arrived, expected ${bytes}`);
      return { ms: r.ms };
    },
    cat: async () => {
      const remoteFile = join(env.anchorRoot, `b2-cat-${++n}.bin`);
      const r = await ossh.ssh(`cat > '${remoteFile}'`, [], { stdinFile: file, timeoutMs: 600_000 });
      const size = await fileSize(remoteFile);
      await rm(remoteFile, { force: true });
      if (size !== bytes) throw new Error(`ssh cat: ${size} bytes arrived, expected ${bytes}`);
      return { ms: r.ms };
    },
  };
  const samples = { mint: [], rsync: [], cat: [] };
  const names = Object.keys(variants);
  try {
    await reps('B2', CONFIG.b2Reps, async (i) => {
      for (let k = 0; k < names.length; k++) {
        const name = names[(i + k) % names.length];
        samples[name].push(await variants[name]());
        await syncDisk(); // the copy is deleted first, so this only settles earlier writes
      }
      log(`B2 rep ${i + 1}/${CONFIG.b2Reps}: ${names.map((nm) => `${nm} ${fmtMs(samples[nm].at(-1).ms)}`).join(', ')}`);
    });
    // One more, unrecorded, run of each under a /proc sampler: where the CPU goes.
    const roots = [process.pid, await env.sshdPid?.()];
    out.cpuProfile = {};
    for (const name of ['mint', 'rsync']) {
      const p = await withCpuProfile(roots, () => variants[name]());
      await syncDisk();
      out.cpuProfile[name] = { wallMs: round(p.wallMs, 0), cpuMs: Object.fromEntries(Object.entries(p.cpuMs ?? {}).filter(([, v]) => v >= 10).sort((a, b) => b[1] - a[1])) };
    }
    log(`B2 CPU profile: ${JSON.stringify(out.cpuProfile)}`);
  } finally {
    await rm(file, { force: true });
  }
  for (const name of names) {
    out[name] = { ...summary(samples[name].map((x) => x.ms)) };
    out[name].mbPerS = mbPerS(bytes, out[name].median);
  }
  out.mint.uploadOnly = summary(samples.mint.map((x) => x.uploadOnlyMs));
  out.mint.connect = summary(samples.mint.map((x) => x.connectMs));
  return out;
}

// ------------------------------------------------------------------------------------------------
// B3: many small files, and a re-upload that must send nothing

async function b3(env, workDir) {
  const dir = join(workDir, 'b3');
  const many = join(dir, 'many');
  await mkdir(many, { recursive: true });
  const count = CONFIG.b3Files;
  log(`B3: writing ${count} files of ${B3_FILE_BYTES} bytes`);
  const pool = randomBytes(B3_FILE_BYTES * 64);
  for (let i = 0; i < count; i += 250) {
    await Promise.all(
      Array.from({ length: Math.min(250, count - i) }, (_, j) => {
        const k = i + j;
        const off = (k * 61) % (pool.length - B3_FILE_BYTES);
        const body = Buffer.from(pool.subarray(off, off + B3_FILE_BYTES));
        body.writeUInt32BE(k, 0); // each file different
        return writeFile(join(many, `f${String(k).padStart(5, '0')}.dat`), body);
      }),
    );
  }
  await syncDisk();
  const { ossh } = env;
  let n = 0;
  const variants = {
    mint: async () => {
      const jobId = randomUUID();
      try {
        const first = await timedUpload(env.host, [many], jobId);
        // Same job, before start (a started job refuses put): what a retried or resumed upload costs.
        const again = await timedUpload(env.host, [many], jobId);
        const landed = (await readdir(join(env.root, jobId, jobId, 'many')).catch(() => [])).length;
        if (landed !== count) throw new Error(`runRemote upload: ${landed} files arrived, expected ${count}`);
        return { ms: first.totalMs, reMs: again.totalMs, sent: first.files.length, reSent: again.files.length, reSentNames: again.files.slice(0, 5) };
      } finally {
        await rm(join(env.root, jobId), { recursive: true, force: true });
      }
    },
    rsync: async () => {
      const remoteDir = join(env.anchorRoot, `b3-rsync-${++n}`);
      try {
        const first = await ossh.rsync(['-a', many, ossh.remote(`${remoteDir}/`)], [], { timeoutMs: 300_000 });
        const again = await ossh.rsync(['-a', '-i', many, ossh.remote(`${remoteDir}/`)], [], { timeoutMs: 300_000 });
        const sentLines = again.stdout.split('\n').filter((l) => /^<f/.test(l));
        const landed = (await readdir(join(remoteDir, 'many')).catch(() => [])).length;
        if (landed !== count) throw new Error(`rsync: ${landed} files arrived, expected ${count}`);
        return { ms: first.ms, reMs: again.ms, reSent: sentLines.length };
      } finally {
        await rm(remoteDir, { recursive: true, force: true });
      }
    },
  };
  // No network, no rsync: what creating the tree costs this filesystem (info).
  variants.localCp = async () => {
    const copy = join(env.anchorRoot, `b3-cp-${++n}`);
    try {
      const r = await run('cp', ['-r', many, copy], { timeoutMs: 300_000 });
      return { ms: r.ms };
    } finally {
      await rm(copy, { recursive: true, force: true });
    }
  };
  const samples = { mint: [], rsync: [], localCp: [] };
  const names = Object.keys(variants);
  try {
    // One unrecorded round: on this machine's ext4 (mounted with discard) the first tree created
    // after the input is fast and every one after a delete is slower; all recorded runs are "after".
    for (const name of names) {
      await variants[name]();
      await syncDisk();
    }
    await reps('B3', CONFIG.b3Reps, async (i) => {
      for (let k = 0; k < names.length; k++) {
        const name = names[(i + k) % names.length];
        samples[name].push(await variants[name]());
        await syncDisk();
      }
      const last = (nm) => samples[nm].at(-1);
      log(`B3 rep ${i + 1}/${CONFIG.b3Reps}: mint ${fmtMs(last('mint').ms)} / re ${fmtMs(last('mint').reMs)}, rsync ${fmtMs(last('rsync').ms)} / re ${fmtMs(last('rsync').reMs)}, local cp -r ${fmtMs(last('localCp').ms)}`);
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const out = { files: count, fileBytes: B3_FILE_BYTES, localCp: summary(samples.localCp.map((x) => x.ms)) };
  for (const name of ['mint', 'rsync']) {
    out[name] = {
      upload: summary(samples[name].map((x) => x.ms)),
      reupload: summary(samples[name].map((x) => x.reMs)),
      reuploadFilesSent: samples[name].map((x) => x.reSent),
    };
  }
  out.mint.firstUploadFilesReported = samples.mint.map((x) => x.sent);
  out.mint.reuploadSentExamples = samples.mint.flatMap((x) => x.reSentNames).slice(0, 5);
  return out;
}

// ------------------------------------------------------------------------------------------------
// B4: 64 concurrent trivial jobs from one process, and the same fan-out with OpenSSH

function countLog(text) {
  const count = (re) => (text.match(re) ?? []).length;
  return {
    acceptedPublickey: count(/Accepted publickey/g),
    maxStartupsDrops: count(/drop connection #\d+ .*past MaxStartups/g),
    preauthCloses: count(/Connection (closed|reset) by .*\[preauth\]/g),
  };
}

async function b4(env, workDir) {
  const dir = join(workDir, 'b4');
  await mkdir(dir, { recursive: true });
  const input = join(dir, 'input.dat');
  await writeRandomFile(input, 1024);
  const jobs = CONFIG.b4Jobs;
  const mintReps = [];
  const anchorReps = [];
  const child = join(HERE, 'lib', 'fanout-child.mjs');
  const { ossh } = env;

  const mintRound = async (i) => {
    const outDir = join(dir, `mint-${i}`);
    const cfgFile = join(dir, `fanout-${i}.json`);
    await writeFile(cfgFile, JSON.stringify({ host: env.host, input, outDir, jobs, jobTimeoutMs: 240_000 }));
    const before = (await env.sshdLog()).length;
    const proc = startChild(process.execPath, [child, cfgFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    proc.child.stdout.on('data', (d) => (stdout += d.toString()));
    let treePeak = { total: 0, count: 0 };
    let maxProcs = 0;
    const sampling = (async () => {
      while (proc.child.exitCode === null && proc.child.signalCode === null) {
        const t = treeRss(proc.child.pid);
        if (t.total > treePeak.total) treePeak = t;
        maxProcs = Math.max(maxProcs, t.count);
        await sleep(200);
      }
    })();
    const exited = new Promise((r) => proc.child.once('exit', r));
    const timeout = sleep(300_000).then(() => 'timeout');
    const how = await Promise.race([exited, timeout]);
    if (how === 'timeout') await stopChild(proc.child);
    await sampling;
    if (how === 'timeout') throw new Error('B4 fan-out did not finish within 300 s');
    await sleep(300); // sshd writes its last lines
    const logDelta = countLog((await env.sshdLog()).slice(before));
    const line = stdout.trim().split('\n').pop();
    let r;
    try {
      r = JSON.parse(line);
    } catch {
      throw new Error(`B4 fan-out child printed no result (exit ${proc.child.exitCode}): ${proc.stderr().slice(-400)}`);
    }
    await rm(outDir, { recursive: true, force: true });
    return { ...r, sshd: logDelta, treePeakRss: treePeak.total, treePeakProcs: treePeak.count, maxProcs };
  };

  // The anchor: MInt's OpenSSH flow for every job at once (a connection per command), each command
  // retried on a connection failure with the same backoff as our default retry policy.
  const anchorRound = async (i) => {
    const before = (await env.sshdLog()).length;
    let retries = 0;
    const attempt = async (fn, transient) => {
      for (let a = 1; ; a++) {
        const r = await fn();
        if (r.code === 0) return r;
        if (!transient.includes(r.code) || a > 5) throw new Error(`exit ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
        retries += 1;
        const ceiling = Math.min(15_000, 500 * 2 ** (a - 1));
        await sleep(Math.round(ceiling / 2 + (Math.random() * ceiling) / 2));
      }
    };
    const q = (s) => `'${s}'`;
    const s = performance.now();
    const settled = await Promise.allSettled(
      Array.from({ length: jobs }, async (_, j) => {
        const remoteDir = join(env.anchorRoot, `b4-${i}-${j}`);
        const out = join(dir, `anchor-${i}-${j}`);
        await mkdir(out, { recursive: true });
        const o = { check: false, timeoutMs: 240_000 };
        await attempt(() => ossh.ssh(`mkdir -p ${q(remoteDir)}`, [], o), [255]);
        await attempt(() => ossh.rsync(['-a', input, ossh.remote(`${remoteDir}/`)], [], o), [12, 255]);
        await attempt(() => ossh.ssh(`cd ${q(remoteDir)} && ${q(env.program)} > ${LOG_NAME} 2>&1`, [], o), [255]);
        await attempt(() => ossh.rsync(['-a', ossh.remote(`${remoteDir}/`), `${out}/`], [], o), [12, 255]);
        if ((await readFile(join(out, 'result.txt'), 'utf8').catch(() => '')) !== 'done\n') throw new Error('result.txt missing');
      }),
    );
    const wallMs = performance.now() - s;
    await sleep(300);
    const logDelta = countLog((await env.sshdLog()).slice(before));
    const failures = {};
    for (const x of settled) {
      if (x.status === 'rejected') {
        const reason = String(x.reason?.message ?? x.reason).slice(0, 160);
        failures[reason] = (failures[reason] ?? 0) + 1;
      }
    }
    for (let j = 0; j < jobs; j++) {
      await rm(join(env.anchorRoot, `b4-${i}-${j}`), { recursive: true, force: true });
      await rm(join(dir, `anchor-${i}-${j}`), { recursive: true, force: true });
    }
    return { jobs, ok: settled.filter((x) => x.status === 'fulfilled').length, failed: settled.filter((x) => x.status === 'rejected').length, failures, wallMs, retries, sshd: logDelta };
  };

  try {
    await reps('B4', CONFIG.b4Reps, async (i) => {
      const m = await mintRound(i);
      mintReps.push(m);
      log(`B4 rep ${i + 1}/${CONFIG.b4Reps} runRemote x${jobs}: ${fmtMs(m.wallMs)}, ${m.failed} failed, sshd accepted ${m.sshd.acceptedPublickey}, MaxStartups drops ${m.sshd.maxStartupsDrops}, ${m.events.retrying} retries, ${m.events.connecting} 'connecting' events, pool handshakes ${m.poolHandshakes ?? 'n/a'}, peak RSS ${fmtBytes(m.peakRss)}`);
      const a = await anchorRound(i);
      anchorReps.push(a);
      log(`B4 rep ${i + 1}/${CONFIG.b4Reps} OpenSSH flow x${jobs}: ${fmtMs(a.wallMs)}, ${a.failed} failed, ${a.retries} retries, sshd accepted ${a.sshd.acceptedPublickey}, MaxStartups drops ${a.sshd.maxStartupsDrops}`);
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const med = (list, f) => round(median(list.map(f)));
  return {
    jobs,
    mint: {
      wallMs: summary(mintReps.map((r) => r.wallMs)),
      failedPerRep: mintReps.map((r) => r.failed),
      failures: mintReps.map((r) => r.failures),
      connectingEventsPerRep: mintReps.map((r) => r.events.connecting),
      poolHandshakesPerRep: mintReps.map((r) => r.poolHandshakes),
      // TCP connections sshd saw for this fan-out: authenticated ones plus those it dropped at
      // MaxStartups before authentication.
      connectionsOpenedPerRep: mintReps.map((r) => r.sshd.acceptedPublickey + r.sshd.maxStartupsDrops),
      retryEventsPerRep: mintReps.map((r) => r.events.retrying),
      retryReasons: mintReps.map((r) => r.retryReasons),
      sshdAcceptedPerRep: mintReps.map((r) => r.sshd.acceptedPublickey),
      sshdMaxStartupsDropsPerRep: mintReps.map((r) => r.sshd.maxStartupsDrops),
      peakRssBytes: summary(mintReps.map((r) => r.peakRss)),
      maxRssBytes: mintReps.map((r) => r.maxRss),
      processTreePeakRssBytes: summary(mintReps.map((r) => r.treePeakRss)),
      processTreeMaxProcs: mintReps.map((r) => r.maxProcs),
      jobMsMedian: med(mintReps, (r) => median(r.jobMs)),
      jobMsMax: round(Math.max(...mintReps.flatMap((r) => r.jobMs))),
    },
    openssh: {
      wallMs: summary(anchorReps.map((r) => r.wallMs)),
      failedPerRep: anchorReps.map((r) => r.failed),
      failures: anchorReps.map((r) => r.failures),
      retriesPerRep: anchorReps.map((r) => r.retries),
      sshdAcceptedPerRep: anchorReps.map((r) => r.sshd.acceptedPublickey),
      sshdMaxStartupsDropsPerRep: anchorReps.map((r) => r.sshd.maxStartupsDrops),
    },
  };
}

// ------------------------------------------------------------------------------------------------
// B5: pull mode (issue 18) against SSH mode, in the same run: submit-to-start, and a big input

/** B5's program: the total size of what the job dir holds, so each run checks that its input arrived whole. */
const SIZE_PROGRAM = "#!/bin/sh\n# B5's program: the bytes of the inputs it was given, one result file.\ncat -- *.bin 2>/dev/null | wc -c | tr -d ' ' > result.txt\n";

async function b5(workDir) {
  const { startSandbox, startPullSandbox, runRemote } = await load();
  const dir = join(workDir, 'b5');
  await mkdir(dir, { recursive: true });
  const program = join(dir, 'size-program.sh');
  await writeFile(program, SIZE_PROGRAM, { mode: 0o755 });
  // Both sites let only result.txt leave (--export): the input is not downloaded back, in either mode.
  const ssh = await startSandbox({ program, gateway: { export: 'result.txt' } });
  onCleanup('B5 SSH sandbox', () => ssh.stop());
  const pull = await startPullSandbox({ program, agentArgs: ['--export', 'result.txt'] });
  onCleanup('B5 pull sandbox', () => pull.stop());
  const hosts = { ssh: ssh.host, pull: pull.host };
  const small = join(dir, 'small.bin');
  await writeRandomFile(small, 1024);
  const big = join(dir, 'big.bin');
  const bytes = CONFIG.b5Bytes;
  const out = { bytes, hub: pull.hub };
  let n = 0;
  const job = async (mode, input, size) => {
    const outputDir = join(dir, `out-${mode}-${++n}`);
    let startedAt;
    const s = performance.now();
    const r = await runRemote({
      host: hosts[mode],
      inputs: [input],
      outputDir,
      cleanup: 'always',
      timeoutMs: 1_800_000,
      onEvent: (e) => {
        if (e.type === 'started' && startedAt === undefined) startedAt = performance.now();
      },
    });
    const ms = performance.now() - s;
    const said = (await readFile(join(outputDir, 'result.txt'), 'utf8').catch(() => '')).trim();
    await rm(outputDir, { recursive: true, force: true });
    if (r.exitCode !== 0 || said !== String(size)) throw new Error(`${mode}: exit ${r.exitCode}, the program saw ${said || 'nothing'} bytes, expected ${size}`);
    if (startedAt === undefined) throw new Error(`${mode}: no 'started' event`);
    return { ms, startMs: startedAt - s, steps: { ...r.timings } };
  };
  const modes = ['ssh', 'pull'];
  // One unrecorded job each: the hub's and the agent's first job (TLS session, SQLite pages, the code cache).
  for (const mode of modes) await job(mode, small, 1024);
  const latency = { ssh: [], pull: [] };
  await reps('B5 latency', CONFIG.b5LatencyReps, async (i) => {
    for (let k = 0; k < modes.length; k++) {
      const mode = modes[(i + k) % modes.length];
      latency[mode].push(await job(mode, small, 1024));
    }
    log(`B5 latency rep ${i + 1}/${CONFIG.b5LatencyReps}: ${modes.map((m) => `${m} start ${fmtMs(latency[m].at(-1).startMs)} job ${fmtMs(latency[m].at(-1).ms)}`).join(', ')}`);
  });
  log(`B5: writing a ${fmtBytes(bytes)} random input`);
  onCleanup('B5 input file', () => rm(big, { force: true }));
  await writeRandomFile(big, bytes);
  await syncDisk();
  await run('cat', [big], { timeoutMs: 300_000, maxOutput: 0 });
  const large = { ssh: [], pull: [] };
  try {
    await reps('B5 big input', CONFIG.b5Reps, async (i) => {
      for (let k = 0; k < modes.length; k++) {
        const mode = modes[(i + k) % modes.length];
        large[mode].push(await job(mode, big, bytes));
        await syncDisk();
      }
      log(`B5 big rep ${i + 1}/${CONFIG.b5Reps}: ${modes.map((m) => `${m} start ${fmtMs(large[m].at(-1).startMs)} job ${fmtMs(large[m].at(-1).ms)}`).join(', ')}`);
    });
  } finally {
    await rm(big, { force: true });
  }
  const steps = (samples) => Object.fromEntries(Object.keys(samples[0]?.steps ?? {}).map((k) => [k, median(samples.map((x) => x.steps[k]))]));
  for (const mode of modes) {
    out[mode] = {
      start: summary(latency[mode].map((x) => x.startMs)),
      job: summary(latency[mode].map((x) => x.ms)),
      jobSteps: steps(latency[mode]),
      bigStart: summary(large[mode].map((x) => x.startMs)),
      bigJob: summary(large[mode].map((x) => x.ms)),
      bigSteps: steps(large[mode]),
    };
    out[mode].bigStart.mbPerS = mbPerS(bytes, out[mode].bigStart.median);
  }
  await pull.stop();
  await ssh.stop();
  return out;
}

// ------------------------------------------------------------------------------------------------
// Targets and the table

function verdict(ok) {
  return ok === undefined ? 'n/a' : ok ? 'PASS' : 'MISS';
}

function judge() {
  const B1 = results.B1;
  if (B1?.sandbox) {
    for (const [envName, b] of Object.entries(B1)) {
      const where = envName === 'sandbox' ? '' : ` [${envName}]`;
      const mint = b.mint.median;
      const r1 = ratio(mint, b.mintFlow.median);
      const r2 = ratio(mint, b.cmCold.median);
      target({ id: 'B1', figure: `trivial job, in-process${where}`, value: fmtMs(mint), anchor: 'MInt flow, OpenSSH (4 connections)', anchorValue: fmtMs(b.mintFlow.median), ratio: r1, target: '<= 0.3x', verdict: verdict(r1 === undefined ? undefined : r1 <= 0.3) });
      const rr = ratio(b.mintRsync?.median, b.mintFlow.median);
      target({ id: 'B1', figure: `trivial job, in-process, every file by rsync (MINT_SSH_EXEC_INLINE=0)${where}`, value: fmtMs(b.mintRsync?.median), anchor: 'MInt flow, OpenSSH (4 connections)', anchorValue: fmtMs(b.mintFlow.median), ratio: rr, target: 'info', verdict: '-' });
      // Issue 16: what a MInt module pays, a fresh node per job (import, connect, job, exit).
      const fresh = b.mintFresh?.median;
      const rf = ratio(fresh, b.mintFlow.median);
      const rn = ratio(fresh, b.nodeSsh?.median);
      const rk = ratio(fresh, b.mintFlowDefaultKex?.median);
      target({ id: 'B1', figure: `trivial job, fresh process${where}`, value: fmtMs(fresh), anchor: 'MInt flow, OpenSSH (4 connections)', anchorValue: fmtMs(b.mintFlow.median), ratio: rf, target: '<= 0.45x', verdict: verdict(rf === undefined ? undefined : rf <= 0.45) });
      target({ id: 'B1', figure: `trivial job, fresh process${where}`, value: fmtMs(fresh), anchor: 'node-ssh, fresh process (mkdir, putFiles, execCommand, getFile)', anchorValue: fmtMs(b.nodeSsh?.median), ratio: rn, target: '<= 0.7x', verdict: verdict(rn === undefined ? undefined : rn <= 0.7) });
      target({ id: 'B1', figure: `trivial job, fresh process${where}`, value: fmtMs(fresh), anchor: "MInt flow with OpenSSH's default kex (sntrup761x25519)", anchorValue: fmtMs(b.mintFlowDefaultKex?.median), ratio: rk, target: 'info', verdict: '-' });
      const imp = b.importCost?.median;
      target({ id: 'B1', figure: `import('mint-ssh-exec'), fresh process${where}`, value: fmtMs(imp), anchor: 'bare node start (paired difference)', anchorValue: fmtMs(b.bareNode?.median), ratio: undefined, target: '<= 80 ms', verdict: verdict(imp === undefined ? undefined : imp <= 80) });
      target({ id: 'B1', figure: `trivial job, end to end${where}`, value: fmtMs(mint), anchor: 'ControlMaster flow (master opened by the job)', anchorValue: fmtMs(b.cmCold.median), ratio: r2, target: '<= 1.0x', verdict: verdict(r2 === undefined ? undefined : r2 <= 1.0) });
      target({ id: 'B1', figure: `trivial job, end to end${where}`, value: fmtMs(mint), anchor: 'ControlMaster flow, master already open', anchorValue: fmtMs(b.cmWarm.median), ratio: ratio(mint, b.cmWarm.median), target: 'info', verdict: '-' });
    }
  }
  const B2 = results.B2;
  if (B2?.mint?.median) {
    const r = ratio(B2.mint.median, B2.rsync.median);
    const size = fmtBytes(B2.bytes);
    target({ id: 'B2', figure: `${size} upload (connect + transfer)`, value: `${fmtMs(B2.mint.median)} (${B2.mint.mbPerS} MB/s)`, anchor: 'rsync -a -e ssh', anchorValue: `${fmtMs(B2.rsync.median)} (${B2.rsync.mbPerS} MB/s)`, ratio: r, target: '<= 1.11x time', verdict: verdict(r <= 1.11) });
    target({ id: 'B2', figure: `${size} upload (connect + transfer)`, value: `${fmtMs(B2.mint.median)} (${B2.mint.mbPerS} MB/s)`, anchor: "ssh host 'cat > f'", anchorValue: `${fmtMs(B2.cat.median)} (${B2.cat.mbPerS} MB/s)`, ratio: ratio(B2.mint.median, B2.cat.median), target: 'info', verdict: '-' });
  }
  const B3 = results.B3;
  if (B3?.mint?.upload?.median) {
    const r = ratio(B3.mint.upload.median, B3.rsync.upload.median);
    target({ id: 'B3', figure: `${B3.files} x ${B3.fileBytes / 1024} KiB upload`, value: fmtMs(B3.mint.upload.median), anchor: 'rsync -a -e ssh', anchorValue: fmtMs(B3.rsync.upload.median), ratio: r, target: '<= 1.11x time', verdict: verdict(r <= 1.11) });
    const sent = B3.mint.reuploadFilesSent;
    const noop = sent.every((x) => x === 0);
    target({ id: 'B3', figure: 'no-change re-upload (same job)', value: `${fmtMs(B3.mint.reupload.median)}, ${Math.max(...sent)} files sent`, anchor: 'rsync -a -i -e ssh re-run', anchorValue: `${fmtMs(B3.rsync.reupload.median)}, ${Math.max(...B3.rsync.reuploadFilesSent)} files sent`, ratio: ratio(B3.mint.reupload.median, B3.rsync.reupload.median), target: 'no-op (0 files)', verdict: verdict(noop) });
  }
  const B4 = results.B4;
  if (B4?.mint?.wallMs?.n) {
    const m = B4.mint;
    const failed = m.failedPerRep.reduce((a, b) => a + b, 0);
    const conns = median(m.connectionsOpenedPerRep);
    const retries = median(m.retryEventsPerRep);
    const allowed = Math.ceil(B4.jobs / 10) + retries;
    const rss = m.peakRssBytes.median;
    const aw = B4.openssh.wallMs.median;
    target({ id: 'B4', figure: `${B4.jobs} concurrent jobs: wall time`, value: fmtMs(m.wallMs.median), anchor: `MInt flow x${B4.jobs}, OpenSSH (+retries)`, anchorValue: `${fmtMs(aw)}, ${B4.openssh.failedPerRep.reduce((a, b) => a + b, 0)} failed`, ratio: ratio(m.wallMs.median, aw), target: 'info', verdict: '-' });
    target({ id: 'B4', figure: 'failures (all repetitions)', value: String(failed), anchor: '-', anchorValue: '-', ratio: undefined, target: '0', verdict: verdict(failed === 0) });
    target({ id: 'B4', figure: 'SSH connections opened (sshd log)', value: `${conns} (${median(m.sshdAcceptedPerRep)} accepted + ${median(m.sshdMaxStartupsDropsPerRep)} dropped at MaxStartups)`, anchor: 'OpenSSH flow: sshd accepted', anchorValue: String(median(B4.openssh.sshdAcceptedPerRep)), ratio: undefined, target: `<= ceil(${B4.jobs}/10)+retries = ${allowed}`, verdict: verdict(conns <= allowed) });
    const mb = (b) => `${Math.round(b / 1e6)} MB`;
    target({ id: 'B4', figure: 'peak RSS of the process', value: mb(rss), anchor: 'its whole process tree (rsync, shims)', anchorValue: `${mb(m.processTreePeakRssBytes.median)}, ${Math.max(...m.processTreeMaxProcs)} procs`, ratio: undefined, target: '<= 200 MB', verdict: verdict(rss <= 200 * 1e6) });
  }
}

function judgePull() {
  const B5 = results.B5;
  if (!B5?.pull?.start?.median) return;
  const p = B5.pull;
  const s = B5.ssh;
  target({ id: 'B5', figure: 'pull: submit-to-start, 1 KiB job (runRemote to started)', value: fmtMs(p.start.median), anchor: 'SSH mode, same job', anchorValue: fmtMs(s.start.median), ratio: ratio(p.start.median, s.start.median), target: '< 1 s', verdict: verdict(p.start.median < 1000) });
  target({ id: 'B5', figure: 'pull: submit-to-start, 1 KiB job', value: fmtMs(p.start.median), anchor: "MInt's WebAPI pull (30 s polls, 10 s sleeps; reference)", anchorValue: '~80 s', ratio: ratio(p.start.median, 80_000), target: 'info', verdict: '-' });
  target({ id: 'B5', figure: 'pull: trivial job end to end (results back, removed)', value: fmtMs(p.job.median), anchor: 'SSH mode, same job', anchorValue: fmtMs(s.job.median), ratio: ratio(p.job.median, s.job.median), target: 'info', verdict: '-' });
  const size = fmtBytes(B5.bytes);
  target({ id: 'B5', figure: `pull: ${size} input, submit to start (through the hub)`, value: `${fmtMs(p.bigStart.median)} (${p.bigStart.mbPerS} MB/s)`, anchor: 'SSH mode, same input', anchorValue: `${fmtMs(s.bigStart.median)} (${s.bigStart.mbPerS} MB/s)`, ratio: ratio(p.bigStart.median, s.bigStart.median), target: 'info', verdict: '-' });
}

function printTables() {
  const rows = results.targets.map((t) => [t.id, t.figure, t.value, t.anchor, t.anchorValue, t.ratio === undefined ? '-' : `${t.ratio.toFixed(2)}x`, t.target, t.verdict]);
  const lines = [];
  lines.push('');
  lines.push(`mint-ssh-exec bench${opts.quick ? ' (--quick)' : ''}: ${results.machine.cpus} CPUs, ${results.machine.ssh}, ${results.machine.rsync}`);
  lines.push('Medians; ratio = MInt time / anchor time (lower is better).');
  lines.push(table(['ID', 'Figure', 'MInt', 'Anchor', 'Anchor value', 'Ratio', 'Target', 'Verdict'], rows));

  const detail = [];
  for (const [envName, b] of Object.entries(results.B1 ?? {})) {
    detail.push([`B1 ${envName}`, 'runRemote steps (median ms)', Object.entries(b.mint.stepsMedianMs).filter(([k]) => k !== 'totalMs').map(([k, v]) => `${k.replace(/Ms$/, '')} ${Math.round(v)}`).join(', ')]);
    detail.push([`B1 ${envName}`, 'MInt flow steps', Object.entries(b.mintFlow.stepsMedianMs).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ')]);
    detail.push([`B1 ${envName}`, 'ControlMaster flow steps', Object.entries(b.cmCold.stepsMedianMs).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ')]);
    detail.push([`B1 ${envName}`, 'ControlMaster warm steps', Object.entries(b.cmWarm.stepsMedianMs).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ')]);
  }
  for (const [envName, v] of Object.entries(results.verbs ?? {})) {
    const f = (o) => Object.entries(o).map(([k, s]) => `${k} ${Math.round(s.median)}`).join(', ');
    detail.push([`verbs ${envName}`, 'gateway verb on a warm connection (ms)', f(v.mintVerbsOnWarmConnection)]);
    detail.push([`verbs ${envName}`, 'OpenSSH command (ms)', f(v.openssh)]);
    detail.push([`verbs ${envName}`, 'no sshd: shell / gateway alone (ms)', f(v.localNoSshd)]);
  }
  if (results.B2?.mint?.uploadOnly) {
    detail.push(['B2', 'runRemote upload split (median ms)', `connect+bridge ${Math.round(results.B2.mint.connect.median)}, upload() ${Math.round(results.B2.mint.uploadOnly.median)}`]);
    for (const [name, p] of Object.entries(results.B2.cpuProfile ?? {})) {
      detail.push(['B2', `CPU ms by process, one ${name} run (${fmtMs(p.wallMs)} wall)`, Object.entries(p.cpuMs).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ')]);
    }
  }
  if (results.B3?.localCp?.n) {
    detail.push(['B3', 'same tree, local cp -r (filesystem alone)', `median ${fmtMs(results.B3.localCp.median)} (min ${fmtMs(results.B3.localCp.min)}, max ${fmtMs(results.B3.localCp.max)})`]);
    detail.push(['B3', 'upload samples: mint / rsync', `${results.B3.mint.upload.samples.map(fmtMs).join(' ')} / ${results.B3.rsync.upload.samples.map(fmtMs).join(' ')}`]);
  }
  if (results.B5?.pull?.bigSteps) {
    const f = (o) => Object.entries(o ?? {}).filter(([k]) => k !== 'totalMs').map(([k, v]) => `${k.replace(/Ms$/, '')} ${Math.round(v)}`).join(', ');
    for (const mode of ['pull', 'ssh']) {
      detail.push(['B5', `${mode}: 1 KiB job steps (median ms)`, f(results.B5[mode].jobSteps)]);
      detail.push(['B5', `${mode}: ${fmtBytes(results.B5.bytes)} job steps (median ms)`, `${f(results.B5[mode].bigSteps)}; whole job ${fmtMs(results.B5[mode].bigJob.median)}`]);
    }
    detail.push(['B5', 'submit-to-start samples: pull / ssh (ms)', `${results.B5.pull.start.samples.map((x) => Math.round(x)).join(' ')} / ${results.B5.ssh.start.samples.map((x) => Math.round(x)).join(' ')}`]);
  }
  if (results.B4?.mint) {
    const m = results.B4.mint;
    detail.push(['B4', "per rep: wall / failed / retries / 'connecting' events / pool handshakes", m.wallMs.samples?.map((w, i) => `${fmtMs(w)} / ${m.failedPerRep[i]} / ${m.retryEventsPerRep[i]} / ${m.connectingEventsPerRep[i]} / ${m.poolHandshakesPerRep[i] ?? 'n/a'}`).join('; ')]);
    detail.push(['B4', 'sshd accepted / MaxStartups drops per rep', m.sshdAcceptedPerRep.map((a, i) => `${a} / ${m.sshdMaxStartupsDropsPerRep[i]}`).join('; ')]);
    detail.push(['B4', 'job time median / max; tree procs max', `${fmtMs(m.jobMsMedian)} / ${fmtMs(m.jobMsMax)}; ${Math.max(...m.processTreeMaxProcs)} processes`]);
  }
  if (detail.length) {
    lines.push('');
    lines.push(table(['Where', 'Breakdown', 'Values'], detail));
  }
  if (notes.length) {
    lines.push('');
    for (const n of notes) lines.push(`note: ${n}`);
  }
  if (results.errors.length) {
    lines.push('');
    for (const e of results.errors) lines.push(`ERROR in ${e.bench}: ${e.message}`);
  }
  lines.push('');
  lines.push(`total ${fmtMs(results.durationMs)}; JSON: ${results.outFile}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

// ------------------------------------------------------------------------------------------------

async function main() {
  if (!distReady()) {
    process.stderr.write('bench: dist/ is missing or incomplete: run `npm run build` (or use `npm run bench`)\n');
    process.exit(2);
  }
  results.machine = await machineInfo();
  if (results.machine.loadavgStart[0] > 0.5 * results.machine.cpus) {
    notes.push(`load average at start was ${results.machine.loadavgStart.join(' ')} on ${results.machine.cpus} CPUs: other work was running, expect noise`);
  }
  const workDir = await mkdtemp(join(os.tmpdir(), 'mint-bench-'));
  onCleanup('work dir', async () => {
    // ControlMasters live in the background with their sockets in workDir/cm-*: stop any left.
    const killed = killByMarker(`${workDir}/cm-`);
    if (killed) log(`stopped ${killed} leftover ssh ControlMaster(s)`);
    await rm(workDir, { recursive: true, force: true });
  });
  const program = join(workDir, 'trivial-program.sh');
  await writeFile(program, TRIVIAL_PROGRAM, { mode: 0o755 });

  log('starting the sandbox sshd');
  const env = await sandboxEnv(workDir, program);
  // Both keys work before anything is timed.
  await env.ossh.ssh('true', [], { timeoutMs: 30_000 });

  const attempt = async (id, fn) => {
    try {
      await fn();
    } catch (error) {
      if (signalled) return; // interrupted: the failure is ours, not the benchmark's
      log(`${id} failed: ${error.stack ?? error.message}`);
      results.errors.push({ bench: id, message: String(error.message ?? error).split('\n')[0] });
    }
  };

  if (opts.only.has('B1')) {
    await attempt('B1', async () => {
      log(`B1: trivial job x${CONFIG.b1Reps} (${env.label})`);
      results.B1 = { sandbox: await b1(env, workDir) };
      log('per-verb costs');
      results.verbs = { sandbox: await verbCosts(env, workDir) };
    });
    if (opts.plainShellUser) {
      const why = plainUserSupported();
      if (why) notes.push(`--plain-shell-user skipped: ${why}`);
      else {
        await attempt('B1 plain-shell-user', async () => {
          const plain = await plainEnv(workDir, program);
          try {
            await plain.ossh.ssh('true', [], { timeoutMs: 30_000 });
            log(`B1: trivial job x${CONFIG.b1Reps} (${plain.label})`);
            results.B1 ??= {};
            results.B1['plain-shell-user'] = await b1(plain, workDir);
            results.verbs ??= {};
            results.verbs['plain-shell-user'] = await verbCosts(plain, workDir);
          } finally {
            await plain.stop(); // userdel -r now, not at the end of the run
          }
        });
      }
    }
  }
  if (opts.only.has('B2')) await attempt('B2', async () => (results.B2 = await b2(env, workDir)));
  if (opts.only.has('B3')) await attempt('B3', async () => (results.B3 = await b3(env, workDir)));
  if (opts.only.has('B4')) {
    await attempt('B4', async () => {
      log(`B4: ${CONFIG.b4Jobs} concurrent jobs x${CONFIG.b4Reps}`);
      results.B4 = await b4(env, workDir);
    });
  }
  if (opts.only.has('B5')) {
    await attempt('B5', async () => {
      log(`B5: pull mode against SSH mode (${CONFIG.b5LatencyReps} trivial jobs each, ${CONFIG.b5Reps} x ${fmtBytes(CONFIG.b5Bytes)} input)`);
      results.B5 = await b5(workDir);
    });
  }
}

let exiting = false;
let interrupted = false;
async function finishAndExit(code) {
  if (exiting) return;
  exiting = true;
  await runCleanups(log);
  const left = liveChildren();
  if (left.length) log(`children still registered at exit (killed): ${left.map((c) => c.pid).join(' ')}`);
  process.exit(code);
}

// process.on, not once: the listener must stay. execa (inside runRemote) uses signal-exit, which
// re-raises a signal when it finds itself the only listener left, and that would kill the bench in
// the middle of its clean-up.
let signalled = 0;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (signalled++ > 0) {
      log(`${sig} again: still cleaning up`);
      return;
    }
    log(`${sig}: cleaning up (no results are written)`);
    interrupted = true;
    abortAll();
    void finishAndExit(130);
  });
}

let code = 0;
try {
  await main();
} catch (error) {
  log(`bench failed: ${error.stack ?? error.message}`);
  results.errors.push({ bench: 'setup', message: String(error.message ?? error) });
  code = 1;
} finally {
  await runCleanups(log);
}
if (interrupted) await finishAndExit(130);
results.machine.loadavgEnd = os.loadavg().map((x) => round(x, 2));
results.finishedAt = new Date().toISOString();
results.durationMs = round(performance.now() - t0, 0);
judge();
judgePull();
const outFile = opts.out ?? join(HERE, 'results', opts.quick ? 'latest-quick.json' : 'latest.json');
results.outFile = outFile;
await mkdir(dirname(outFile), { recursive: true });
await writeFile(outFile, `${JSON.stringify(results, null, 2)}\n`);
printTables();
if (results.errors.length) code = 1;
await finishAndExit(code);
