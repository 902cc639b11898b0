/**
 * What one gateway verb costs on the external computer, counted rather than timed (a count does not
 * depend on the machine's load): the gateway runs under dash and bash inside strace, which records
 * its processes' exec and read() calls. rsync's feature checks (--confine-root for uploads,
 * --remote-option for downloads) read `rsync --help` once per gateway process, in blocks; a
 * `| while read` loop used to read it one byte per syscall, twice for probe (~15,000 reads).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GATEWAY_SCRIPT } from '../../src/site/install.js';
import { freshDir } from '../support/fixture.js';

describe('gateway verb cost', () => {
  it.each(['dash', 'bash'])('probe under %s: rsync --help runs once and is not read byte by byte; same answers', async (shell) => {
    const dir = await freshDir();
    const root = join(dir, 'root');
    await mkdir(root, { mode: 0o700 });
    const trace = join(dir, 'trace');
    const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=execve,read', '-s', '64', '-o', trace, shell, GATEWAY_SCRIPT, '--root', root, '--program', '/bin/true'], {
      // MGW_RSYNC_HELP_READ from outside must not count as "already read" (that would drop --confine-root).
      env: { PATH: '/usr/bin:/bin', HOME: dir, SSH_ORIGINAL_COMMAND: 'mint-gw probe', MGW_RSYNC_HELP_READ: '1', MGW_RSYNC_HELP: '' },
      encoding: 'utf8',
    });
    expect(r.error, 'strace must be installed (npm test installs it)').toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^confine_root=yes$/m);
    expect(r.stdout).toMatch(/^rsync_downloads=yes$/m);
    const lines = readFileSync(trace, 'utf8').split('\n');
    const helps = lines.filter((l) => /execve\("[^"]*rsync", \["[^"]*rsync", "--help"\]/.test(l));
    const oneByte = lines.filter((l) => /\bread\(\d+, .*, 1\)\s+= 1$/.test(l));
    expect(helps).toHaveLength(1);
    // Before: 13,000-15,000 one-byte reads (two help texts of ~7 KB); what is left is the probe's other small loops.
    expect(oneByte.length).toBeLessThan(5000);
  });
});
