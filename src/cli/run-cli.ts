/**
 * The process edge of both CLIs: Ctrl-C (and SIGTERM) become an abort that cancels the remote job
 * and tears down what was started; a second Ctrl-C exits at once. Only here is process.exit called.
 */
import type { Io } from './output.js';

type Main = (argv: string[], io: Io | undefined, signal: AbortSignal) => Promise<number>;

export function runCli(main: Main): void {
  const controller = new AbortController();
  let interrupted = 0;
  const onSignal = (name: NodeJS.Signals): void => {
    interrupted += 1;
    if (interrupted > 1) process.exit(130);
    process.stderr.write(`\n${name}: stopping (press Ctrl-C again to exit at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  main(process.argv.slice(2), undefined, controller.signal).then(
    (code) => {
      process.exitCode = interrupted && code === 0 ? 130 : code;
    },
    (error: unknown) => {
      process.stderr.write(`internal error: ${String(error)}\n`);
      process.exitCode = 220;
    },
  );
}
