import { rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { startSandbox } from '../../sandbox/sandbox.js';
import { startDockerSandbox } from '../../sandbox/docker.js';
import { startPullSandbox } from '../../sandbox/pull.js';
import { SandboxError } from '../../errors.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import { defineCommand, parseCommand, printHelp } from '../options.js';
import type { Io } from '../output.js';
import { PROGRAM } from './common.js';

export const sandboxSpec = defineCommand({
  program: PROGRAM,
  name: 'sandbox',
  brief: 'run a throwaway external computer on this machine to try things on',
  summary:
    'Start a throwaway external computer on this machine (a private sshd with the gateway installed) and keep ' +
    'it running until Ctrl-C; prints its host profile and how to use it, and removes everything it made. ' +
    'With --pull: a pull-mode pair instead, a hub (HTTPS on 127.0.0.1, its own CA) and an agent running the gateway here, ' +
    'and a `mode: pull` host profile.',
  positionals: [],
  options: {
    program: { type: 'string', value: 'PATH', description: 'the remote-side program jobs run (default: the sample from examples/)' },
    port: { type: 'string', value: 'N', description: 'the port it listens on at 127.0.0.1 (default: a free one; with --pull, the hub\'s)' },
    'write-config': { type: 'string', value: 'FILE', description: 'write the host profile here once the host answers (removed when it stops)' },
    docker: { type: 'boolean', description: 'run the host in a Docker container instead (needs a Docker engine)' },
    pull: { type: 'boolean', description: 'pull mode: a hub and an agent on this machine instead of an sshd (no port on the site side)' },
  },
});

/** Keeps a sandbox host running until interrupted, and says how to use it. */
export async function sandboxCommand(args: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values } = parseCommand(sandboxSpec, args);
  if (values.help) return printHelp(io, sandboxSpec);
  let port: number | undefined;
  if (values.port !== undefined) {
    port = Number(values.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError('--port takes a port number');
  }
  const options = { ...(values.program ? { program: values.program } : {}), ...(port ? { port } : {}) };
  if (values.pull) {
    if (values.docker) throw new UsageError('--pull and --docker do not go together');
    return pullSandbox(options, values['write-config'], io, signal);
  }
  const sandbox = values.docker ? await startDockerSandbox(options) : await startSandbox(options);
  // --write-config: the profile appears there only once the host answers, and goes with it.
  const profile = values['write-config'] ? resolve(values['write-config']) : join(sandbox.dir, 'hosts.yaml');
  try {
    await writeFile(`${profile}.tmp`, sandbox.profileYaml());
    await rename(`${profile}.tmp`, profile);
    io.stdout.write(
      [
        `sandbox host running on 127.0.0.1:${sandbox.port}${values.docker ? ' (in a Docker container)' : ''}`,
        `  program:  ${sandbox.program} (run as the forced command's program, cwd = a fresh job dir)`,
        `  job root: ${sandbox.root}`,
        `  gateway:  ${sandbox.gatewayPath}`,
        ...(sandbox.sshdPid() === undefined ? [] : [`  sshd:     pid ${sandbox.sshdPid()} (if it dies, this command stops, removes everything and exits ${ExitCode.SANDBOX})`]),
        '',
        'host profile (also written to the file below):',
        sandbox.profileYaml().replace(/^/gm, '  '),
        'try it from another terminal:',
        `  npx mint-ssh-exec probe sandbox --config ${profile}`,
        `  npx mint-ssh-exec run sandbox FILE... --config ${profile}`,
        '',
        'press Ctrl-C to stop it (everything it made is removed)',
        '',
      ].join('\n'),
    );
    // Until Ctrl-C, or until the host dies under us: then it is a failure, said at once.
    const death = await new Promise<string | undefined>((resolve) => {
      if (signal.aborted) resolve(undefined);
      signal.addEventListener('abort', () => resolve(undefined), { once: true });
      void sandbox.died.then(resolve);
    });
    if (death !== undefined) throw new SandboxError(`the sandbox host stopped: ${death}; everything it made is removed`);
    return ExitCode.OK;
  } finally {
    await rm(profile, { force: true });
    await sandbox.stop();
    io.stderr.write('sandbox stopped and removed\n');
  }
}

/** `sandbox --pull`: a hub and an agent until Ctrl-C, or until one of them dies. */
async function pullSandbox(options: { program?: string; port?: number }, writeConfig: string | undefined, io: Io, signal: AbortSignal): Promise<number> {
  const sandbox = await startPullSandbox(options);
  const profile = writeConfig ? resolve(writeConfig) : join(sandbox.dir, 'hosts.yaml');
  try {
    await writeFile(`${profile}.tmp`, sandbox.profileYaml());
    await rename(`${profile}.tmp`, profile);
    io.stdout.write(
      [
        `pull sandbox running: hub ${sandbox.hub} (pid ${sandbox.hubPid()}), agent of site ${sandbox.site} (pid ${sandbox.agentPid()})`,
        `  hub data: ${sandbox.data} (CA ${sandbox.ca}, submit token ${sandbox.submitTokenFile})`,
        `  program:  ${sandbox.program} (run by the gateway as on a site, cwd = a fresh job dir)`,
        `  job root: ${sandbox.root}`,
        `  agent:    ${sandbox.agentCommand.join(' ')}`,
        `  (if the hub or the agent dies, this command stops, removes everything and exits ${ExitCode.SANDBOX})`,
        '',
        'host profile (also written to the file below):',
        sandbox.profileYaml().replace(/^/gm, '  '),
        'try it from another terminal:',
        `  npx mint-ssh-exec probe sandbox --config ${profile}`,
        `  npx mint-ssh-exec run sandbox FILE... --config ${profile}`,
        '',
        'press Ctrl-C to stop it (everything it made is removed)',
        '',
      ].join('\n'),
    );
    const death = await new Promise<string | undefined>((resolve) => {
      if (signal.aborted) resolve(undefined);
      signal.addEventListener('abort', () => resolve(undefined), { once: true });
      void sandbox.died.then(resolve);
    });
    if (death !== undefined) throw new SandboxError(`the pull sandbox stopped: ${death}; everything it made is removed`);
    return ExitCode.OK;
  } finally {
    await rm(profile, { force: true });
    await sandbox.stop();
    io.stderr.write('sandbox stopped and removed\n');
  }
}
