/**
 * The audit chain (issue 17, part 4): the gateway, under dash and under bash, writes logs whose
 * every line names the hash of the line before it, and `mint-gateway verify-audit` passes them and
 * names the line where an edit, a deletion or an insertion breaks the chain. The logs are written
 * by real requests to the real gateway script (its audit path is the same under sshd: the sshd
 * round trip is in test/job/integrity.test.ts, whose head the job record keeps).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/mint-gateway.js';
import { AUDIT_GENESIS, verifyAuditLog } from '../../src/site/audit-chain.js';
import { GATEWAY_SCRIPT } from '../../src/site/install.js';
import { dirname } from 'node:path';
import { captureIo } from '../support/cli-io.js';
import { freshDir } from '../support/fixture.js';

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

async function verifyCli(argv: string[]): Promise<{ code: number; stdout: string }> {
  const { io, out } = captureIo({ ...process.env });
  const code = await main(['verify-audit', ...argv], io, Readable.from([]));
  return { code, stdout: out().stdout };
}

/** A job root whose log the gateway wrote under `shell`: a list, a refusal, a job that runs (and its program line), a status. */
async function writtenLog(shell: string): Promise<{ root: string; log: string; lines: string[] }> {
  const dir = await freshDir();
  const root = join(dir, 'root');
  await mkdir(root, { mode: 0o700 });
  const program = join(dir, 'prog.sh');
  await writeFile(program, '#!/bin/sh\necho ran\n');
  await chmod(program, 0o755);
  const job = '6f0e0d0c-0b0a-4908-8706-050403020100';
  const gw = (command: string): number | null =>
    spawnSync(shell, [GATEWAY_SCRIPT, '--root', root, '--program', program], {
      env: { PATH: '/usr/bin:/bin', HOME: dir, SSH_CONNECTION: '127.0.0.9 5 127.0.0.1 22', SSH_ORIGINAL_COMMAND: command },
    }).status;
  expect(gw('mint-gw list')).toBe(0);
  expect(gw(`mint-gw status ${job}`)).toBe(67);
  expect(gw(`mint-gw run ${job}`)).toBe(0);
  expect(gw(`mint-gw status ${job}`)).toBe(0);
  const log = join(root, '.mint-gateway-audit.log');
  return { root, log, lines: (await readFile(log, 'utf8')).split('\n').slice(0, -1) };
}

describe('the audit chain', () => {
  it.each(['dash', 'bash'])('under %s every line chains to the one before it (the first to the hash of nothing), and verify-audit passes', async (shell) => {
    const { root, log, lines } = await writtenLog(shell);
    expect(lines).toHaveLength(8);
    expect(lines[0]).toMatch(new RegExp(`^\\S+ prev=${AUDIT_GENESIS} key=mint from=127\\.0\\.0\\.9 req=\\S+ verb=list job=- decision=accepted$`));
    for (let i = 1; i < lines.length; i++) expect(lines[i]).toContain(` prev=${sha(`${lines[i - 1]}\n`)} `);
    const report = await verifyAuditLog(log);
    expect(report).toMatchObject({ ok: true, lines: 8, unchained: 0, head: sha(`${lines[7]}\n`), problems: [] });
    const cli = await verifyCli(['--root', root, '--head', sha(`${lines[3]}\n`)]);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toBe(`head ${sha(`${lines[3]}\n`)}: line 4\nok: 8 lines, the chain holds; head ${report.head}\n`);
  });

  it('names the line after an edited one, a deleted one, and an inserted one, and exits 1', async () => {
    const { root, log, lines } = await writtenLog('dash');
    const check = async (text: string): Promise<{ code: number; stdout: string }> => {
      await writeFile(log, text);
      return verifyCli(['--root', root]);
    };
    const edited = [...lines];
    edited[2] = edited[2]!.replace('decision=refused:E_NOJOB', 'decision=accepted');
    let r = await check(`${edited.join('\n')}\n`);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(`${log}:4: line 4 does not follow line 3 (its prev= is not line 3's hash): line 3 was edited, or lines between them were deleted or inserted\nFAIL: 1 break(s) in 8 lines\n`);

    r = await check(`${[...lines.slice(0, 4), ...lines.slice(5)].join('\n')}\n`);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^${log}:5: line 5 does not follow line 4 `));

    // A forged line that chains to line 2 correctly: the original line 3 then no longer follows.
    const forged = lines[2]!.replace(/prev=[0-9a-f]{64}/, `prev=${sha(`${lines[1]}\n`)}`).replace('verb=status', 'verb=rm');
    r = await check(`${[...lines.slice(0, 2), forged, ...lines.slice(2)].join('\n')}\n`);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^${log}:4: line 4 does not follow line 3 `));

    // A line without prev= among chained ones; the first line removed.
    r = await check(`${[...lines.slice(0, 3), '2026-01-01T00:00:00Z key=mint verb=rm', ...lines.slice(3)].join('\n')}\n`);
    expect(r.stdout).toContain(`${log}:4: line 4 has no prev= field`);
    r = await check(`${lines.slice(1).join('\n')}\n`);
    expect(r.stdout).toContain(`${log}:1: line 1 does not start the chain`);
  });

  it('lines from a gateway before the chain may only come first; a head that is no longer in the log fails', async () => {
    const { root, log, lines } = await writtenLog('bash');
    const legacy = ['2026-01-01T00:00:00Z key=mint from=- req=1 verb=list job=- decision=accepted', '2026-01-01T00:00:01Z key=mint from=- req=1 verb=list job=- outcome=ok exit=0'];
    // The gateway chains its first line to whatever line came last, old or new.
    const first = lines[0]!.replace(/prev=[0-9a-f]{64}/, `prev=${sha(`${legacy[1]}\n`)}`);
    const rest = [first, ...lines.slice(1)];
    for (let i = 1; i < rest.length; i++) rest[i] = rest[i]!.replace(/prev=[0-9a-f]{64}/, `prev=${sha(`${rest[i - 1]}\n`)}`);
    await writeFile(log, `${[...legacy, ...rest].join('\n')}\n`);
    const report = await verifyAuditLog(log);
    expect(report).toMatchObject({ ok: true, lines: 10, unchained: 2 });
    // The client's head for the last line, after the tail was cut off: not in the log any more.
    const head = sha(`${rest.at(-1)}\n`);
    await writeFile(log, `${[...legacy, ...rest.slice(0, -1)].join('\n')}\n`);
    const r = await verifyCli(['--root', root, '--head', head]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`no line of this log has the hash ${head}`);
  });

  it("the sh-only installer's verify-audit says the same as mint-gateway verify-audit, under dash and bash", async () => {
    const { root, log, lines } = await writtenLog('dash');
    const installer = join(dirname(GATEWAY_SCRIPT), 'mint-gateway-install.sh');
    const legacy = '2026-01-01T00:00:00Z key=mint from=- req=1 verb=list job=- decision=accepted';
    const edited = [...lines];
    edited[4] = edited[4]!.replace('exit=0', 'exit=1');
    const cases: [string, string, string[]][] = [
      ['healthy', `${lines.join('\n')}\n`, ['--head', sha(`${lines[2]}\n`)]],
      ['edited', `${edited.join('\n')}\n`, []],
      ['deleted', `${[...lines.slice(0, 2), ...lines.slice(3)].join('\n')}\n`, []],
      ['inserted', `${[...lines.slice(0, 5), legacy, ...lines.slice(5)].join('\n')}\n`, []],
      ['first line gone, head gone', `${lines.slice(1, -1).join('\n')}\n`, ['--head', sha(`${lines.at(-1)}\n`)]],
      ['legacy first', `${legacy}\n${lines.join('\n')}\n`, []],
      ['no newline at the end', `${lines.join('\n')}`, []],
      ['empty', '', []],
    ];
    for (const [name, text, extra] of cases) {
      await writeFile(log, text);
      const node = await verifyCli(['--root', root, ...extra]);
      for (const shell of ['dash', 'bash']) {
        const sh = spawnSync(shell, [installer, 'verify-audit', '--root', root, ...extra], { env: { PATH: '/usr/bin:/bin', HOME: root }, encoding: 'utf8' });
        expect({ name, shell, code: sh.status, stdout: sh.stdout, stderr: sh.stderr }).toEqual({ name, shell, code: node.code, stdout: node.stdout, stderr: '' });
      }
    }
  });
});
