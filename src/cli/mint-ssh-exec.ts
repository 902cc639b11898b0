/** `mint-ssh-exec`: argument dispatch and the one error boundary; the work is in the library. */
import { readFileSync } from 'node:fs';
import { MintSshError } from '../errors.js';
import { ExitCode, UsageError, exitCodeFor } from './exit-codes.js';
import { processIo, type Io } from './output.js';
import { probeCommand, probeUsage } from './commands/probe.js';
import { attachCommand, attachUsage, runCommand, runUsage } from './commands/run.js';
import { cancelCommand, cancelUsage, jobsCommand, jobsUsage } from './commands/jobs.js';
import { sandboxCommand, sandboxUsage } from './commands/sandbox.js';

const USAGE = `usage:
  ${probeUsage}
  ${runUsage}
  ${attachUsage}
  ${jobsUsage}
  ${cancelUsage}
  ${sandboxUsage}
  mint-ssh-exec --version`;

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
      case 'sandbox':
        return await sandboxCommand(rest, io, controller.signal);
      case '--version':
      case '-v':
        io.stdout.write(`${version()}\n`);
        return ExitCode.OK;
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        io.stdout.write(`${USAGE}\n`);
        return command === undefined ? ExitCode.USAGE : ExitCode.OK;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
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
