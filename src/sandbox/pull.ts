/**
 * A throwaway pull-mode pair on this machine (issue 18): a hub (HTTPS on 127.0.0.1, its own CA from
 * `hub init`, SQLite in a temp dir) and an agent that runs the real gateway script locally, with a
 * job root and program of its own. Both are the real `mint-ssh-exec hub` and `mint-ssh-exec agent`
 * processes, as a site would run them: the agent reaches the hub over outbound HTTPS only, and the
 * sandbox opens no port but the hub's. As the SSH sandbox, it never outlives itself quietly: a hub or
 * agent that dies settles `died`, and stop() kills the job processes and removes every file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_BIN } from '../assets/index.js';
import { SandboxError } from '../errors.js';
import { installProgram, killJobs } from './sandbox.js';
import type { InlineHost } from '../config/resolve-host.js';

export interface PullSandboxOptions {
  /** The remote-side program; default the sample from examples/. */
  program?: string;
  /** The hub's port on 127.0.0.1; default a free one. */
  port?: number;
  /** Extra options for the agent, i.e. the gateway's site options (`--export`, `--max-jobs`...). */
  agentArgs?: readonly string[];
  /** Parent of the sandbox's temp dir. */
  baseDir?: string;
}

export interface PullSandbox {
  dir: string;
  /** The hub's https:// URL. */
  hub: string;
  port: number;
  site: string;
  /** A `mode: pull` host profile for runRemote, probe and run. */
  host: InlineHost & { name: string };
  /** The hub's data dir (`hub init`'s CA, certificate, SQLite, submit token). */
  data: string;
  ca: string;
  submitTokenFile: string;
  siteTokenFile: string;
  root: string;
  program: string;
  /** The agent's command line, as a site would type it. */
  agentCommand: string[];
  hubPid: () => number | undefined;
  agentPid: () => number | undefined;
  /** The sandbox as a YAML host profiles file, for --config. */
  profileYaml: () => string;
  /** What the hub and the agent wrote on stderr so far. */
  logs: () => { hub: string; agent: string };
  /** Settles when the hub or the agent stops without being told to, with what died and how. */
  died: Promise<string>;
  /** Stops the agent and the hub, kills the job processes, removes every file. */
  stop: () => Promise<void>;
}

const SITE = 'sandbox';

/** `mint-ssh-exec ARGS` to its end; its stdout, or a SandboxError with what it said. */
function cli(args: string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
    child.on('error', (error) => reject(new SandboxError(`cannot run mint-ssh-exec ${args[0]}: ${error.message}`, { cause: error })));
    child.on('close', (code) => {
      if (code === 0) resolvePromise(out);
      else reject(new SandboxError(`mint-ssh-exec ${args.slice(0, 2).join(' ')} failed (exit ${code}): ${err.trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
}

function ended(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

export async function startPullSandbox(options: PullSandboxOptions = {}): Promise<PullSandbox> {
  const dir = await mkdtemp(join(options.baseDir ?? tmpdir(), 'mint-pull-sandbox-'));
  const data = join(dir, 'hub');
  const root = join(dir, 'jobs');
  let hub: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  const stderr = { hub: '', agent: '' };
  let stopping = false;
  let reportDeath: (what: string) => void = () => undefined;
  const died = new Promise<string>((r) => (reportDeath = r));

  const halt = async (child: ChildProcess | undefined): Promise<void> => {
    if (!child || ended(child)) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    if (!ended(child)) {
      child.kill('SIGKILL');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 1000))]);
    }
  };
  const stop = async (): Promise<void> => {
    stopping = true;
    // The jobs first: the agent then has nothing left to follow, and stops at once.
    await killJobs(root);
    await halt(agent);
    await halt(hub);
    await killJobs(root);
    await rm(dir, { recursive: true, force: true });
  };

  /** Starts `mint-ssh-exec ARGS` and waits for `ready` on its stderr. */
  const launch = (which: 'hub' | 'agent', args: string[], ready: RegExp): Promise<{ child: ChildProcess; match: RegExpExecArray }> =>
    new Promise((resolvePromise, reject) => {
      const child = spawn(process.execPath, [CLI_BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      const timer = setTimeout(() => reject(new SandboxError(`the ${which} did not start within 20 s: ${stderr[which].trim().slice(-500)}`)), 20_000);
      let up = false;
      child.stderr!.on('data', (d: Buffer) => {
        stderr[which] += d.toString('utf8');
        // Bounded: a long-lived sandbox keeps the last 1 MiB of what each said.
        if (stderr[which].length > 2 * 1024 * 1024) stderr[which] = stderr[which].slice(-1024 * 1024);
        const m = up ? null : ready.exec(stderr[which]);
        if (m) {
          up = true;
          clearTimeout(timer);
          resolvePromise({ child, match: m });
        }
      });
      child.once('error', (error) => reject(new SandboxError(`cannot start the ${which}: ${error.message}`, { cause: error })));
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
        if (!up) reject(new SandboxError(`the ${which} stopped at start (${how}): ${stderr[which].trim().slice(-500)}`));
        else if (!stopping) reportDeath(`the ${which} (pid ${child.pid}) died: ${how}`);
      });
    });

  try {
    const program = await installProgram(dir, options.program);
    await mkdir(root, { mode: 0o700 });

    // The MInt side: `hub init` (private CA, server certificate, submit token), one site, the hub.
    await cli(['hub', 'init', '--data', data]);
    const siteToken = (await cli(['hub', 'add-site', SITE, '--data', data])).trim();
    const siteTokenFile = join(dir, `${SITE}.token`);
    await writeFile(siteTokenFile, `${siteToken}\n`, { mode: 0o600 });
    const started = await launch('hub', ['hub', '--data', data, '--listen', `127.0.0.1:${options.port ?? 0}`], /listening on https:\/\/127\.0\.0\.1:(\d+)/);
    hub = started.child;
    const port = Number(started.match[1]);
    const url = `https://127.0.0.1:${port}`;
    const ca = join(data, 'ca.pem');
    const submitTokenFile = join(data, 'submit.token');

    // The site: the agent, with the gateway's site options, reaching the hub over HTTPS only.
    const agentCommand = ['mint-ssh-exec', 'agent', '--hub', url, '--site', SITE, '--token-file', siteTokenFile, '--ca', ca, '--root', root, '--program', program, ...(options.agentArgs ?? [])];
    agent = (await launch('agent', agentCommand.slice(1), /polling/)).child;

    const host = { name: 'sandbox', mode: 'pull', hub: url, site: SITE, hubTokenFile: submitTokenFile, hubCa: ca } satisfies InlineHost & { name: string };
    return {
      dir,
      hub: url,
      port,
      site: SITE,
      host,
      data,
      ca,
      submitTokenFile,
      siteTokenFile,
      root,
      program,
      agentCommand,
      hubPid: () => hub?.pid,
      agentPid: () => agent?.pid,
      profileYaml: () =>
        ['hosts:', '  sandbox:', '    mode: pull', `    hub: ${url}`, `    site: ${SITE}`, `    hubTokenFile: ${submitTokenFile}`, `    hubCa: ${ca}`, ''].join('\n'),
      logs: () => ({ ...stderr }),
      died,
      stop,
    };
  } catch (error) {
    await stop();
    if (error instanceof SandboxError) throw error;
    throw new SandboxError(`the pull sandbox did not start: ${(error as Error).message}`, { cause: error });
  }
}
