/**
 * The client's side of inline streams (transfer/inline.ts), as pure units on local files: what an
 * upload stream holds, and how a download stream lands (or is refused) in the output dir.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareManifests, manifestOfInputs } from '../../src/transfer/manifest.js';
import { hashLanded, INLINE_MAX, InlineReceiver, InlineStreamError, inlineUpload } from '../../src/transfer/inline.js';
import { freshDir } from '../support/fixture.js';

const hex = (s: string): string => Buffer.from(s).toString('hex');
const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

function receive(lines: string[], data: string | Buffer): InlineReceiver {
  const r = new InlineReceiver();
  const all = Buffer.concat([Buffer.from(['mint-inline 1', ...lines, 'data', ''].join('\n')), Buffer.from(data)]);
  // In odd-sized chunks, as a channel delivers them.
  for (let at = 0; at < all.length; at += 7) r.feed(all.subarray(at, at + 7));
  return r;
}

describe('inline upload streams', () => {
  it('walk the inputs as rsync -rL sends them, with the manifest of the very bytes sent', async () => {
    const src = await freshDir();
    await writeFile(join(src, 'a.dat'), 'alpha');
    await mkdir(join(src, 'tree', 'sub'), { recursive: true });
    await writeFile(join(src, 'tree', 'sub', 'run.sh'), '#!/bin/sh\n');
    await chmod(join(src, 'tree', 'sub', 'run.sh'), 0o755);
    await symlink(join(src, 'a.dat'), join(src, 'tree', 'link'));
    const up = inlineUpload([join(src, 'a.dat'), join(src, 'tree')])!;
    const text = up.body.toString('utf8');
    expect(text).toBe(
      ['mint-inline 1', `f 5 0 ${hex('a.dat')}`, `d ${hex('tree')}`, `f 5 0 ${hex('tree/link')}`, `d ${hex('tree/sub')}`, `f 10 1 ${hex('tree/sub/run.sh')}`, 'data', 'alphaalpha#!/bin/sh\n'].join('\n'),
    );
    expect(up.entries).toEqual(await manifestOfInputs([join(src, 'a.dat'), join(src, 'tree')]));
    expect(up.files).toEqual(['a.dat', 'tree/link', 'tree/sub/run.sh']);
  });

  it('are not used for more bytes or entries than a stream carries', async () => {
    const src = await freshDir();
    await writeFile(join(src, 'big'), Buffer.alloc(INLINE_MAX + 1));
    expect(inlineUpload([join(src, 'big')])).toBeUndefined();
    const many = join(src, 'many');
    await mkdir(many);
    for (let i = 0; i < 1001; i++) await writeFile(join(many, String(i)), '');
    expect(inlineUpload([many])).toBeUndefined();
  });
});

describe('inline download streams', () => {
  it('land files and directories with the program\'s modes (set-id bits dropped) and times', async () => {
    const out = await freshDir();
    const r = receive(['d 0 755 1700000000.5 ' + hex('d'), `f 3 4755 1600000000.25 ${hex('d/x')}`, `f 2 640 1600000001 ${hex('試 料')}`], 'abcde');
    expect(await r.land(out)).toEqual(['d/x', '試 料']);
    expect(await readFile(join(out, 'd', 'x'), 'utf8')).toBe('abc');
    expect((await stat(join(out, 'd', 'x'))).mode & 0o7777).toBe(0o755);
    expect((await stat(join(out, 'd', 'x'))).mtimeMs).toBe(1600000000250);
    expect((await stat(join(out, '試 料'))).mode & 0o777).toBe(0o640);
    expect((await stat(join(out, 'd'))).mtimeMs).toBe(1700000000500);
  });

  it('replace a symlink standing at a result\'s name instead of writing through it', async () => {
    const out = await freshDir();
    const victim = join(await freshDir(), 'victim');
    await writeFile(victim, 'keep');
    await symlink(victim, join(out, 'result.txt'));
    await receive([`f 3 644 1 ${hex('result.txt')}`], 'new').land(out);
    expect(await readFile(victim, 'utf8')).toBe('keep');
    expect((await lstat(join(out, 'result.txt'))).isFile()).toBe(true);
  });

  it('refuse a path through a symlink in the output dir (rsync then decides), writing nothing', async () => {
    const out = await freshDir();
    const elsewhere = await freshDir();
    await symlink(elsewhere, join(out, 'sub'));
    await expect(receive([`f 1 644 1 ${hex('sub/x')}`], 'x').land(out)).rejects.toThrow(InlineStreamError);
    expect(existsSync(join(elsewhere, 'x'))).toBe(false);
    expect(await readlink(join(out, 'sub'))).toBe(elsewhere);
  });

  const bad: Array<[string, string[], string, RegExp]> = [
    ['a path with ..', [`f 1 644 1 ${hex('../x')}`], 'x', /leads out of the results/],
    ['an absolute path', [`f 1 644 1 ${hex('/tmp/mint-inline-absolute')}`], 'x', /leads out of the results/],
    ['an empty part', [`f 1 644 1 ${hex('a//x')}`], 'x', /leads out of the results/],
    ['a NUL', [`f 1 644 1 ${Buffer.from('a\0b').toString('hex')}`], 'x', /NUL-free UTF-8/],
    ['not UTF-8', [`f 1 644 1 ff`], 'x', /NUL-free UTF-8/],
    ['one path twice', [`f 1 644 1 ${hex('a')}`, `f 1 644 1 ${hex('a')}`], 'xy', /names "a" twice/],
    ['fewer bytes than listed', [`f 3 644 1 ${hex('a')}`], 'xy', /2 of 3 bytes arrived/],
    ['more bytes than listed', [`f 1 644 1 ${hex('a')}`], 'xy', /more bytes than the list announces/],
    ['a garbled line', [`f 1 644 ${hex('a')}`], 'x', /not "TYPE SIZE MODE MTIME HEXPATH"/],
    ['more than INLINE_MAX', [`f ${INLINE_MAX + 1} 644 1 ${hex('a')}`], '', /more than 1048576/],
  ];
  it.each(bad)('refuse %s, writing nothing', async (_name, lines, data, message) => {
    const out = await freshDir();
    await expect(receive(lines, data).land(out)).rejects.toThrow(message);
    expect(existsSync(join(out, 'a'))).toBe(false);
    expect(existsSync('/tmp/mint-inline-absolute')).toBe(false);
  });

  it('are checked as landed, read back from the disk', async () => {
    const out = await freshDir();
    const files = await receive([`f 5 644 1 ${hex('r.txt')}`], 'right').land(out);
    expect(compareManifests([{ path: 'r.txt', bytes: 5, sha256: sha('right') }], await hashLanded(out, files))).toEqual([]);
    await writeFile(join(out, 'r.txt'), 'wrong');
    expect(compareManifests([{ path: 'r.txt', bytes: 5, sha256: sha('right') }], await hashLanded(out, files)).map((d) => d.problem)).toEqual(['changed']);
  });
});
