import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, chmodSync, readFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RSYNC_CLIENT_OPTIONS, checkServerArgs, type Direction } from '../../src/transfer/rsync-args.js';

/** What the installed rsync really asks its remote shell to run, for our client options. */
function realServerArgs(direction: Direction): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'mint-rsync-args-'));
  const rsh = join(dir, 'rsh');
  writeFileSync(rsh, `#!/bin/sh\nprintf '%s\\n' "$@" > ${dir}/argv\nexit 1\n`);
  chmodSync(rsh, 0o755);
  mkdirSync(join(dir, 'src'));
  const paths = direction === 'put' ? [join(dir, 'src'), 'mint:work/'] : ['mint:work/', join(dir, 'out/')];
  spawnSync('rsync', [...RSYNC_CLIENT_OPTIONS[direction], '-8', '--out-format=%n', '--info=progress2', `--rsh=${rsh}`, '--', ...paths]);
  return readFileSync(join(dir, 'argv'), 'utf8').trimEnd().split('\n');
}

describe('checkServerArgs', () => {
  it.each(['put', 'get'] as const)('accepts what the local rsync sends for %s and extracts the caps', (direction) => {
    const check = checkServerArgs(realServerArgs(direction), direction);
    expect(check).toEqual({ ok: true, caps: expect.stringMatching(/^\.[A-Za-z]+$/) });
  });

  it('refuses server argv that differs from the gateway template', () => {
    expect(checkServerArgs(['mint', 'rsync', '--server', '-tEre.iLsfxCIvu', '--delete', '--log-format=X', '--partial', '.', 'w/'], 'put')).toMatchObject({ ok: false });
    expect(checkServerArgs(['mint', 'rsync', '--server', '-ltEre.iLsfxCIvu', '--log-format=X', '--partial', '.', 'w/'], 'put')).toMatchObject({ ok: false, reason: expect.stringContaining('template') });
    expect(checkServerArgs(['mint', 'rsync', '--server', '-tre.iLsfxCIvu', '.', 'w/'], 'get')).toMatchObject({ ok: false });
    expect(checkServerArgs(['mint', 'rsync', '--server', '--sender', '-tr', '.', 'w/'], 'get')).toMatchObject({ ok: false, reason: expect.stringContaining('capability') });
  });
});
