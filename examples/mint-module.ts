/**
 * A MInt module wrapper ("program B") in TypeScript: what replaces execute_remote_command.sh.
 * MInt's program A has linked the input ports to real file names in the current directory and
 * calls this with the host and the input names; outputs land in the current directory, and the
 * exit status is the remote program's.
 *
 *   node mint-module.js calc-site structure.dat conditions.dat
 */
import { runRemote, isMintSshError, type JobEvent } from 'mint-ssh-exec';

async function main(argv: string[]): Promise<number> {
  const [host, ...inputs] = argv;
  if (!host) {
    process.stderr.write('usage: mint-module HOST INPUT...\n');
    return 2;
  }
  const onEvent = (event: JobEvent): void => {
    if (event.type === 'log') process.stdout.write(event.text);
    if (event.type === 'retrying') process.stderr.write(`network trouble during ${event.step}, retrying in ${event.delayMs} ms\n`);
  };
  try {
    const result = await runRemote({
      host,
      inputs,
      outputDir: process.env.MINT_OUTPUT_DIR ?? '.',
      cleanup: 'on-success',
      onEvent,
      ...(process.env.MINT_HOSTS_FILE ? { configFile: process.env.MINT_HOSTS_FILE } : {}),
    });
    if (result.failed) {
      process.stderr.write(`remote program failed (${result.state}, exit ${result.exitCode}); its log is in remote_program_exec.log\n`);
    }
    return result.exitCode ?? 1;
  } catch (error) {
    // Typed errors carry a code and a hint; anything else is a bug worth a stack trace.
    if (isMintSshError(error)) {
      process.stderr.write(`mint-module: ${error.code}: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

process.exitCode = await main(process.argv.slice(2));
