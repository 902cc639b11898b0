/** `mint-ssh-exec`: argument dispatch and the one error boundary; the work is in the library. */
import { readFileSync } from 'node:fs';
import { MintSshError } from '../errors.js';
import { ExitCode, UsageError, exitCodeFor } from './exit-codes.js';
import { programHelp, unknownCommand, type ProgramSpec } from './options.js';
import { processIo, type Io } from './output.js';
import { probeCommand, probeSpec } from './commands/probe.js';
import { attachCommand, attachSpec, runCommand, runSpec } from './commands/run.js';
import { cancelCommand, cancelSpec, jobsCommand, jobsSpec, rmCommand, rmSpec } from './commands/jobs.js';
import { sandboxCommand, sandboxSpec } from './commands/sandbox.js';
import { caCommand, caSpec } from './commands/ca.js';
import { agentCommand, agentSpec, hubCommand, hubSpec } from './commands/pull.js';

/** The subcommands, in the order the usage lists them; each one's table makes its parser and help. */
export const PROGRAM_SPEC: ProgramSpec = {
  program: 'mint-ssh-exec',
  summary: 'Run part of a MInt workflow module on an external computer over one SSH connection, through a forced-command gateway (set up there with mint-gateway).',
  commands: [probeSpec, runSpec, attachSpec, jobsSpec, cancelSpec, rmSpec, sandboxSpec, caSpec, hubSpec, agentSpec],
};

export async function main(argv: string[] = process.argv.slice(2), io: Io = processIo, signal?: AbortSignal): Promise<number> {
  const [command, ...rest] = argv;
  const controller = new AbortController();
  signal?.addEventListener('abort', () => controller.abort(signal.reason), { once: true });
  try {
    switch (command) {
      case 'probe':
        return await probeCommand(rest, io);
      case 'run':
        return await runCommand(rest, io, controller.signal);
      case 'attach':
        return await attachCommand(rest, io, controller.signal);
      case 'jobs':
        return await jobsCommand(rest, io);
      case 'cancel':
        return await cancelCommand(rest, io);
      case 'rm':
        return await rmCommand(rest, io);
      case 'sandbox':
        return await sandboxCommand(rest, io, controller.signal);
      case 'ca':
        return await caCommand(rest, io);
      case 'hub':
        return await hubCommand(rest, io, controller.signal);
      case 'agent':
        return await agentCommand(rest, io, controller.signal);
      case '--version':
      case '-v':
        io.stdout.write(`${version()}\n`);
        return ExitCode.OK;
      case 'help':
        // `help COMMAND` is `COMMAND --help`.
        if (rest[0] !== undefined) return await main([rest[0], '--help'], io, controller.signal);
        io.stdout.write(programHelp(PROGRAM_SPEC));
        return ExitCode.OK;
      case undefined:
      case '--help':
      case '-h':
        io.stdout.write(programHelp(PROGRAM_SPEC));
        return command === undefined ? ExitCode.USAGE : ExitCode.OK;
      default:
        throw unknownCommand(PROGRAM_SPEC, command);
    }
  } catch (error) {
    return reportError(io, error, 'mint-ssh-exec');
  }
}

export function reportError(io: Io, error: unknown, program: string): number {
  if (error instanceof UsageError || (error instanceof TypeError && (error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS'))) {
    io.stderr.write(`${program}: ${error.message}\n`);
    return ExitCode.USAGE;
  }
  if (error instanceof MintSshError) {
    io.stderr.write(`${program}: error: ${error.message}\n`);
    if (io.env.DEBUG) io.stderr.write(`${error.stack ?? ''}\n`);
    return exitCodeFor(error);
  }
  io.stderr.write(`${program}: internal error: ${error instanceof Error ? (io.env.DEBUG ? error.stack : error.message) : String(error)}\n`);
  return ExitCode.INTERNAL;
}

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
