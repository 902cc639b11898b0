/**
 * The progress line speaks one unit family: sizes and rates both in IEC units (KiB, MiB, GiB), where
 * it used to print our MiB beside rsync's own `3.21MB/s` (which is in fact MiB/s: rsync divides by
 * 1024). Pure units: the reporter on a fake terminal, and the rate parser on rsync's own texts.
 */
import { describe, expect, it } from 'vitest';
import { progressReporter } from '../../src/cli/progress.js';
import { parseRate } from '../../src/transfer/rsync.js';
import { captureIo } from '../support/cli-io.js';

describe('progress units', () => {
  it('draws bytes and rate in the same units: MiB and MiB/s', () => {
    const { io, out } = captureIo({});
    Object.assign(io.stderr, { isTTY: true });
    const progress = progressReporter(io, { quiet: false, streamLog: false });
    progress.onEvent({ type: 'uploading', bytes: 12.5 * 1024 * 1024, percent: 45, rate: '3.21MB/s', bytesPerSecond: 3.21 * 1024 * 1024 });
    progress.onEvent({ type: 'downloading', bytes: 3 * 1024 * 1024 * 1024, percent: 100, rate: '1.50GB/s', bytesPerSecond: 1.5 * 1024 ** 3 });
    progress.stop();
    const lines = out().stderr.split(/\r\x1b\[2K/).filter(Boolean);
    expect(lines).toEqual(['uploading 12.5 MiB 45% 3.2 MiB/s', 'downloading 3.0 GiB 100% 1.5 GiB/s']);
  });

  it("reads rsync's rate as rsync computes it (units of 1024: its kB/s is KiB/s)", () => {
    expect(parseRate('503.16kB/s')).toBeCloseTo(503.16 * 1024);
    expect(parseRate('3.21MB/s')).toBeCloseTo(3.21 * 1024 * 1024);
    expect(parseRate('1.50GB/s')).toBeCloseTo(1.5 * 1024 ** 3);
    expect(parseRate('0.00kB/s')).toBe(0);
    expect(parseRate('fast')).toBeUndefined();
  });
});
