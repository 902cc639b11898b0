/**
 * Red team (h/R): takex's client checks what landed against the manifest the site served, and reads
 * every served path under outputDir — but a served path is never checked to stay there. A hostile
 * site names `../../etc/hostname` (or a FIFO, or /dev/zero) and the client reads it: a read outside
 * outputDir whose hash decides whether the client answers `remove` (a 1-bit oracle for a guessed
 * file), and a hang or memory blow-up for a FIFO or a device. FAILS as reviewed.
 */
import { mkdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashLanded } from '../../src/transfer/inline.js';
import { freshDir } from '../support/fixture.js';

describe('red team: takex client, a served path outside outputDir', () => {
  it('never reads a served path that leads out of outputDir', async () => {
    const dir = await freshDir();
    const out = join(dir, 'out');
    await mkdir(out);
    const outside = relative(out, '/etc/hostname');
    expect(outside.startsWith('..')).toBe(true);
    const got = await hashLanded(out, [outside]).catch(() => []);
    // As reviewed: the file outside is read and hashed.
    expect(got).toEqual([]);
  });
});
