/**
 * Red team (h/R): takex's client checks what landed against the manifest the site served. A hostile
 * site naming `../../etc/hostname` (or a FIFO, or /dev/zero) had the client read it: a read outside
 * outputDir whose hash decided whether the client answered `remove` (a 1-bit oracle for a guessed
 * file), and a hang or memory blow-up for a FIFO or a device. Now a served path that leads out is a
 * protocol error (parseManifestLine), the client reads back only what the stream wrote, and
 * hashLanded itself reads only regular files inside its dir.
 */
import { mkdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashLanded } from '../../src/transfer/inline.js';
import { parseManifestLine } from '../../src/transfer/manifest.js';
import { freshDir } from '../support/fixture.js';

describe('red team: takex client, a served path outside outputDir', () => {
  it('never reads a served path that leads out of outputDir', async () => {
    const dir = await freshDir();
    const out = join(dir, 'out');
    await mkdir(out);
    const outside = relative(out, '/etc/hostname');
    expect(outside.startsWith('..')).toBe(true);
    const got = await hashLanded(out, [outside]).catch(() => []);
    expect(got).toEqual([]);
  });

  it('a served manifest line whose path leads out is not a manifest line', () => {
    const hash = 'a'.repeat(64);
    for (const path of ['../../etc/hostname', '/etc/hostname', 'a/../../b', 'a//b', './a']) {
      expect(parseManifestLine(`${Buffer.from(path).toString('hex')} 3 ${hash}`)).toBeUndefined();
    }
    expect(parseManifestLine(`${Buffer.from('a/b c.txt').toString('hex')} 3 ${hash}`)).toEqual({ path: 'a/b c.txt', bytes: 3, sha256: hash });
  });
});
