import { mkdtemp, readFile, rm, writeFile, copyFile, chmod } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SandboxError } from '../errors.js';
import { GATEWAY_SCRIPT, install } from '../site/install.js';
import { SAMPLE_PROGRAM, type Sandbox, type SandboxOptions } from './sandbox.js';

/**
 * Whether a Docker engine is reachable, asked the way testcontainers itself asks, so that the
 * answer matches what a testcontainers-backed sandbox would meet.
 */
export async function dockerAvailable(): Promise<{ available: boolean; reason: string }> {
  try {
    const { getContainerRuntimeClient } = await loadTestcontainers();
    const client = await getContainerRuntimeClient();
    return { available: true, reason: `Docker ${client.info.containerRuntime.serverVersion}` };
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] ?? '' : String(error);
    return { available: false, reason: `no Docker engine: ${message}` };
  }
}

/**
 * testcontainers is an optional peer dependency: the Docker sandbox is for machines with a Docker
 * engine, and the package should not pull ~100 packages into every MInt module that never uses it.
 */
async function loadTestcontainers(): Promise<typeof import('testcontainers')> {
  try {
    return await import('testcontainers');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
      throw new SandboxError('the Docker sandbox needs the testcontainers package, which is not installed', {
        hint: 'npm install testcontainers (an optional peer dependency of mint-ssh-exec), or run the sandbox without --docker',
      });
    }
    throw error;
  }
}

const DOCKERFILE = `FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends openssh-server rsync && rm -rf /var/lib/apt/lists/* \\
 && useradd -m -s /bin/sh mint && mkdir -p /run/sshd /home/mint/.ssh /home/mint/.mint /home/mint/mint-jobs \\
 && chmod 700 /home/mint/.ssh /home/mint/mint-jobs
COPY mint-gateway.sh /home/mint/.mint/mint-gateway.sh
COPY program.sh /home/mint/program/execute_remote-side_program_ssh.sh
COPY authorized_keys /home/mint/.ssh/authorized_keys
RUN chmod 755 /home/mint/.mint/mint-gateway.sh /home/mint/program/execute_remote-side_program_ssh.sh \\
 && chmod 600 /home/mint/.ssh/authorized_keys && chown -R mint:mint /home/mint && ssh-keygen -A
EXPOSE 22
CMD ["/usr/sbin/sshd", "-D", "-e"]
`;

/**
 * The same sandbox host in a container (for machines with a Docker engine): a Debian image with
 * OpenSSH and rsync, the MInt account with /bin/sh as its shell, the gateway installed by the same
 * installer. Paths in the returned object (root, gatewayPath, program) are inside the container.
 */
export async function startDockerSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const { GenericContainer, Wait } = await loadTestcontainers();
  const dir = await mkdtemp(join(tmpdir(), 'mint-docker-sandbox-'));
  try {
    const clientKey = join(dir, 'mint_ed25519');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'mint-sandbox', '-f', clientKey], { stdio: 'pipe' });
    const clientPublicKey = (await readFile(`${clientKey}.pub`, 'utf8')).trim();
    const root = '/home/mint/mint-jobs';
    const gatewayPath = '/home/mint/.mint/mint-gateway.sh';
    const program = '/home/mint/program/execute_remote-side_program_ssh.sh';
    const { line } = await install({ publicKey: clientPublicKey, gatewayPath, authorizedKeys: '', gateway: { keyName: 'mint-sandbox', root, program }, print: true });
    await writeFile(join(dir, 'authorized_keys'), `${line}\n`);
    await copyFile(GATEWAY_SCRIPT, join(dir, 'mint-gateway.sh'));
    await copyFile(resolve(options.program ?? SAMPLE_PROGRAM), join(dir, 'program.sh'));
    await chmod(join(dir, 'program.sh'), 0o755);
    await writeFile(join(dir, 'Dockerfile'), DOCKERFILE);
    const image = await GenericContainer.fromDockerfile(dir).build('mint-ssh-exec-sandbox:latest', { deleteOnExit: false });
    const container = await image
      .withExposedPorts(options.port ? { container: 22, host: options.port } : 22)
      .withWaitStrategy(Wait.forLogMessage(/Server listening/))
      .start();
    const port = container.getMappedPort(22);
    const hostPub = (await container.exec(['cat', '/etc/ssh/ssh_host_ed25519_key.pub'])).output.trim().split(/\s+/);
    const knownHosts = join(dir, 'known_hosts');
    await writeFile(knownHosts, `[127.0.0.1]:${port} ${hostPub[0]} ${hostPub[1]}\n`);
    await writeFile(join(dir, 'host.pub'), `${hostPub[0]} ${hostPub[1]}\n`);
    const fingerprint = execFileSync('ssh-keygen', ['-l', '-f', join(dir, 'host.pub')], { encoding: 'utf8' }).split(/\s+/)[1] ?? '';
    const watch = watchContainer(container);
    const host = { name: 'sandbox', hostname: '127.0.0.1', port, user: 'mint', identityFile: clientKey, knownHostsFile: knownHosts, agent: false as const, sshConfig: false as const };
    return {
      dir,
      port,
      user: 'mint',
      host,
      clientKey,
      clientPublicKey,
      knownHosts,
      hostKeyFingerprint: fingerprint,
      authorizedKeys: '/home/mint/.ssh/authorized_keys',
      gatewayPath,
      root,
      program,
      profileYaml: () =>
        `hosts:\n  sandbox:\n    hostname: 127.0.0.1\n    port: ${port}\n    user: mint\n    identityFile: ${clientKey}\n    knownHostsFile: ${knownHosts}\n    agent: false\n    sshConfig: false\n`,
      reinstall: async () => {
        throw new SandboxError('reinstall is not supported for the Docker sandbox');
      },
      // SIGHUP makes sshd re-execute itself: a restart that keeps the container and its port.
      restartSshd: async () => {
        await container.exec(['kill', '-HUP', '1']);
      },
      sshdLog: async () => (await container.logs()).read()?.toString() ?? '',
      sshdPid: () => undefined,
      // The container's sshd is its pid 1: the container stopping is the host dying.
      died: watch.died,
      stop: async () => {
        watch.stop();
        await container.stop().catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error instanceof SandboxError ? error : new SandboxError(`Docker sandbox failed: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * `died` settles when the container stops serving while nobody asked it to (looked at every 2 s:
 * testcontainers reports no exit event); `stop` ends the watch, for a stop on purpose.
 */
function watchContainer(container: { exec: (command: string[]) => Promise<{ exitCode: number }> }): { died: Promise<string>; stop: () => void } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const died = new Promise<string>((resolveDeath) => {
    const dead = (why: string): void => {
      if (stopped) return;
      clearInterval(timer);
      resolveDeath(why);
    };
    timer = setInterval(() => {
      container.exec(['true']).then(
        (r) => r.exitCode === 0 || dead(`the sandbox container stopped answering (exec exited ${r.exitCode})`),
        (error: unknown) => dead(`the sandbox container stopped: ${(error as Error).message.split('\n')[0]}`),
      );
    }, 2000);
  });
  return {
    died,
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
