/**
 * The progress line on a terminal: bytes, rate (both in KiB/MiB/GiB) and percentage from rsync, elapsed time while the
 * program runs, retry notices. Silent when stderr is not a TTY or with --quiet, so logs and pipes
 * stay clean.
 */
import type { JobEvent } from '../job/events.js';
import type { Io } from './output.js';

export function progressReporter(io: Io, options: { quiet: boolean; streamLog: boolean }): { onEvent: (event: JobEvent) => void; stop: () => void } {
  const tty = Boolean(io.stderr.isTTY) && !options.quiet;
  let line = '';
  let runningSince = 0;
  let ticker: NodeJS.Timeout | undefined;
  const show = (text: string): void => {
    if (!tty) return;
    line = text;
    io.stderr.write(`\r\x1b[2K${text}`);
  };
  const clear = (): void => {
    if (tty && line) io.stderr.write('\r\x1b[2K');
    line = '';
  };
  const note = (text: string): void => {
    if (options.quiet) return;
    clear();
    io.stderr.write(`${text}\n`);
  };
  const stopTicker = (): void => {
    if (ticker) clearInterval(ticker);
    ticker = undefined;
  };
  const onEvent = (event: JobEvent): void => {
    switch (event.type) {
      case 'connecting':
        show(`connecting to ${event.host}${event.attempt > 1 ? ` (attempt ${event.attempt})` : ''}…`);
        break;
      case 'retrying':
        note(`${event.step}: ${event.error.message.split('\n')[0]}; retrying in ${(event.delayMs / 1000).toFixed(1)} s (attempt ${event.attempt})`);
        break;
      case 'waiting':
        note(`the site is full (${event.reason.split('\n')[0]}); waiting ${(event.delayMs / 1000).toFixed(0)} s for a slot`);
        break;
      case 'uploading':
      case 'downloading':
        // One unit family: rsync's own `3.21MB/s` beside our `12.0 MiB` read as two (its MB are MiB).
        show(`${event.type} ${formatBytes(event.bytes)} ${event.percent}% ${event.bytesPerSecond === undefined ? event.rate : `${formatBytes(event.bytesPerSecond)}/s`}`);
        break;
      case 'queued':
        note(`queued: scheduler job ${event.schedulerId} (${event.reason})`);
        break;
      case 'started':
        runningSince = Date.now();
        if (tty) ticker = setInterval(() => show(`running ${elapsed(Date.now() - runningSince)}`), 1000);
        show('running 0:00');
        break;
      case 'log':
        if (options.streamLog) {
          clear();
          io.stdout.write(event.text);
          if (ticker) show(`running ${elapsed(Date.now() - runningSince)}`);
        }
        break;
      case 'exited':
        stopTicker();
        clear();
        break;
      case 'done':
        stopTicker();
        clear();
        break;
      default:
        break;
    }
  };
  return { onEvent, stop: () => (stopTicker(), clear()) };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

function elapsed(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}
