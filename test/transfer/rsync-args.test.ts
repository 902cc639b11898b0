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
  const paths = direction === 'put' ? [join(dir, 'src'), 'mint:work/'] : ['mint::work/', join(dir, 'out/')];
  spawnSync('rsync', [...RSYNC_CLIENT_OPTIONS[direction], '-8', '--out-format=%n', '--info=progress2', `--rsh=${rsh}`, '--', ...paths]);
  return readFileSync(join(dir, 'argv'), 'utf8').trimEnd().split('\n');
}

describe('checkServerArgs', () => {
  it('accepts what the local rsync sends for put and extracts the caps', () => {
    expect(checkServerArgs(realServerArgs('put'), 'put')).toEqual({ ok: true, caps: expect.stringMatching(/^\.[A-Za-z]+$/) });
  });

  it('accepts what the local rsync sends for get (rsync\'s daemon mode over the channel): no caps on the command line', () => {
    expect(realServerArgs('get').slice(1)).toEqual(['rsync', '--server', '--daemon', '.']);
    expect(checkServerArgs(realServerArgs('get'), 'get')).toEqual({ ok: true, caps: '' });
  });

  it('refuses server argv that differs from the gateway template', () => {
    expect(checkServerArgs(['mint', 'rsync', '--server', '-tEre.iLsfxCIvu', '--delete', '--log-format=X', '--partial', '.', 'w/'], 'put')).toMatchObject({ ok: false });
    expect(checkServerArgs(['mint', 'rsync', '--server', '-ltEre.iLsfxCIvu', '--log-format=X', '--partial', '.', 'w/'], 'put')).toMatchObject({ ok: false, reason: expect.stringContaining('template') });
    expect(checkServerArgs(['mint', 'rsync', '--server', '-tre.iLsfxCIvu', '.', 'w/'], 'put')).toMatchObject({ ok: false });
    expect(checkServerArgs(['mint', 'rsync', '--server', '-tr', '.', 'w/'], 'put')).toMatchObject({ ok: false, reason: expect.stringContaining('capability') });
    // A download is rsync's daemon mode only: a sender argv (the old way) is refused.
    expect(checkServerArgs(['mint', 'rsync', '--server', '--sender', '-ltpre.iLsfxCIvu', '.', 'w/'], 'get')).toMatchObject({ ok: false, reason: expect.stringContaining('daemon') });
    expect(checkServerArgs(['mint', 'rsync', '--server', '--daemon', '--config=/x', '.'], 'get')).toMatchObject({ ok: false });
  });
});
