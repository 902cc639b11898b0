// B4's fan-out, in a process of its own so that its RSS is the fan-out's alone: N concurrent
// runRemote calls (Promise.allSettled) to one host. Reads its settings from the JSON file named by
// argv[2]; prints one JSON line with the outcome on stdout.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { load } from './mint.mjs';

const config = JSON.parse(await readFile(process.argv[2], 'utf8'));
const { runRemote } = await load();
// Since the connection pool (src/connection/pool.ts) the package counts its own handshakes.
const index = await import('mint-ssh-exec');
const pool = index.defaultPool;

let peakRss = process.memoryUsage().rss;
const sampler = setInterval(() => {
  const rss = process.memoryUsage().rss;
  if (rss > peakRss) peakRss = rss;
}, 10);

const counts = { connecting: 0, connected: 0, retrying: 0 };
const retryReasons = {};
const started = performance.now();
const jobs = Array.from({ length: config.jobs }, async (_, i) => {
  const outputDir = join(config.outDir, `job-${i}`);
  await mkdir(outputDir, { recursive: true });
  const t0 = performance.now();
  const result = await runRemote({
    host: config.host,
    inputs: [config.input],
    outputDir,
    cleanup: 'always',
    timeoutMs: config.jobTimeoutMs,
    onEvent: (event) => {
      if (event.type === 'connecting') counts.connecting += 1;
      else if (event.type === 'connected') counts.connected += 1;
      else if (event.type === 'retrying') {
        counts.retrying += 1;
        const reason = `${event.step}: ${String(event.error?.message ?? event.error).split('\n')[0].slice(0, 120)}`;
        retryReasons[reason] = (retryReasons[reason] ?? 0) + 1;
      }
    },
  });
  if (result.exitCode !== 0 || !result.files.includes('result.txt')) {
    throw new Error(`job ${i}: exit ${result.exitCode}, files ${result.files.join(',')}`);
  }
  return { ms: performance.now() - t0, connections: result.connections, timings: result.timings };
});
const settled = await Promise.allSettled(jobs);
const wallMs = performance.now() - started;
clearInterval(sampler);
peakRss = Math.max(peakRss, process.memoryUsage().rss);

const failures = {};
for (const s of settled) {
  if (s.status === 'rejected') {
    const reason = String(s.reason?.message ?? s.reason).split('\n')[0].slice(0, 160);
    failures[reason] = (failures[reason] ?? 0) + 1;
  }
}
const ok = settled.filter((s) => s.status === 'fulfilled').map((s) => s.value);
process.stdout.write(
  `${JSON.stringify({
    jobs: config.jobs,
    ok: ok.length,
    failed: config.jobs - ok.length,
    failures,
    wallMs,
    jobMs: ok.map((o) => o.ms),
    connectionsPerJob: ok.map((o) => o.connections),
    events: counts,
    retryReasons,
    peakRss,
    poolHandshakes: typeof pool?.handshakes === 'number' ? pool.handshakes : null,
    // Linux ru_maxrss is in KiB: the high-water mark over the whole life of this process.
    maxRss: process.resourceUsage().maxRSS * 1024,
  })}\n`,
);
process.exit(0);
