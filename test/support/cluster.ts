/** What the private Slurm and Grid Engine fixtures share: a free loopback port, and the sweep after the daemons stop. */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * KILLs what outlived the daemons: a process whose cwd or an open file lies under `dir` (a job step
 * that outlived slurmd, a shepherd), or that `also` claims (given its environ and cmdline).
 */
export function killLeftovers(dir: string, also?: (environ: string[], cmdline: string) => boolean): void {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let hit = false;
    try {
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      hit = cwd === dir || cwd.startsWith(`${dir}/`);
      if (!hit) hit = readdirSync(`/proc/${entry}/fd`).some((fd) => readlinkSync(`/proc/${entry}/fd/${fd}`).startsWith(`${dir}/`));
      if (!hit && also) hit = also(readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0'), readFileSync(`/proc/${entry}/cmdline`, 'utf8'));
    } catch {
      continue;
    }
    if (hit) {
      try {
        process.kill(Number(entry), 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}
