// `npm run demo`: a real job, start to finish, on a throwaway sandbox host on this machine, by both
// methods. First SSH push: an OpenSSH sshd on 127.0.0.1 with the real gateway installed by the real
// installer. Then pull mode: a hub (HTTPS on 127.0.0.1) and an agent that polls it and runs the same
// gateway locally, opening no port. Each job goes through the same runRemote a MInt module calls;
// only the host profile differs. Nothing is left behind, even on Ctrl-C.
import { mkdtemp, writeFile, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runRemote } from 'mint-ssh-exec';
import { progressReporter } from 'mint-ssh-exec/cli';
import { startPullSandbox, startSandbox } from 'mint-ssh-exec/sandbox';

// `--program PATH` runs your own remote-side program instead of the sample.
const { values } = parseArgs({ options: { program: { type: 'string' } } });

const work = await mkdtemp(join(tmpdir(), 'mint-demo-'));
let sandbox;
let pull;
const controller = new AbortController();
let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  process.stderr.write('\ninterrupted: cancelling the job and removing the sandbox...\n');
  controller.abort();
});

try {
  process.stdout.write('1. starting a sandbox host (private sshd on 127.0.0.1, gateway installed by mint-gateway install)\n');
  sandbox = await startSandbox(values.program ? { program: values.program } : {});
  process.stdout.write(`   sandbox at 127.0.0.1:${sandbox.port}, host key ${sandbox.hostKeyFingerprint}\n`);
  process.stdout.write(`   authorized_keys line: ${(await import('node:fs')).readFileSync(sandbox.authorizedKeys, 'utf8').trim().slice(0, 110)}...\n`);

  const inputs = join(work, 'inputs');
  await (await import('node:fs/promises')).mkdir(inputs);
  await writeFile(join(inputs, 'structure.dat'), 'Fe 0.0 0.0 0.0\nFe 0.5 0.5 0.5\n');
  await writeFile(join(inputs, 'conditions.dat'), 'temperature 1273\npressure 0.1\n');
  process.stdout.write(`2. running a job with inputs ${inputs}/{structure.dat,conditions.dat}\n`);
  // The same job, the same call: only the host differs (an SSH profile here, a pull one below).
  const job = async (host, outputDir, over) => {
    process.stdout.write('---------- remote side log ----------------\n');
    const progress = progressReporter(
      { stdout: process.stdout, stderr: process.stderr, env: process.env },
      { quiet: false, streamLog: true },
    );
    let result;
    try {
      result = await runRemote({
        host,
        inputs: [join(inputs, 'structure.dat'), join(inputs, 'conditions.dat')],
        // Results stay for you to look at (everything else the demo made is removed).
        outputDir,
        args: ['demo'],
        signal: controller.signal,
        onEvent: progress.onEvent,
      });
    } finally {
      progress.stop();
    }
    process.stdout.write('-------------------------------------------\n');
    const t = result.timings;
    process.stdout.write(
      `   job ${result.jobId} ${result.failed ? 'FAILED' : 'succeeded'} (exit ${result.exitCode}) in ${t.totalMs.toFixed(0)} ms ` +
        `(connect ${t.connectMs.toFixed(0)}, upload ${t.uploadMs.toFixed(0)}, run ${t.runMs.toFixed(0)}, download ${t.downloadMs.toFixed(0)}, cleanup ${t.cleanupMs.toFixed(0)} ms) ${over}\n`,
    );
    process.stdout.write(`   results landed in ${result.outputDir}:\n`);
    for (const name of (await readdir(result.outputDir, { recursive: true })).sort()) process.stdout.write(`     ${name}\n`);
    process.stdout.write(`   remote job dir removed: ${result.cleanedUp}\n`);
    return result;
  };
  const ssh = await job(sandbox.host, join(process.cwd(), 'demo-output'), 'over 1 SSH connection');
  await sandbox.stop();
  sandbox = undefined;
  process.stdout.write('3. SSH sandbox stopped\n');

  process.stdout.write('4. the same job in pull mode: a hub (HTTPS, its own CA) and an agent that polls it and runs the gateway here\n');
  pull = await startPullSandbox(values.program ? { program: values.program } : {});
  process.stdout.write(`   hub at ${pull.hub} (data in ${pull.data}); the agent opens no port:\n`);
  process.stdout.write(`   ${pull.agentCommand.join(' ').slice(0, 150)}...\n`);
  process.stdout.write(`   host profile: ${JSON.stringify({ mode: 'pull', hub: pull.hub, site: pull.site })}\n`);
  const viaHub = await job(pull.host, join(process.cwd(), 'demo-output-pull'), 'through the hub');
  process.exitCode = ssh.failed || viaHub.failed ? 1 : 0;
} catch (error) {
  process.stderr.write(`demo failed: ${error.message}\n`);
  process.exitCode = interrupted ? 130 : 1;
} finally {
  await sandbox?.stop();
  await pull?.stop();
  await rm(work, { recursive: true, force: true });
  process.stdout.write('5. sandboxes stopped; the sshd, the hub, the agent, job processes and temp files are gone\n');
}
