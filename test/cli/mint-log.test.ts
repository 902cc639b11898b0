import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { appendMintLog, formatMintLogLine, mintLogFields, mintLogPath } from '../../src/cli/mint-log.js';

describe('MInt solver_execute.log lines', () => {
  const fields = mintLogFields('abaqus', 'job-1', { MINT_USER_ID: 'u1', MINT_RUN_ID: 'r1', MINT_WORKFLOW_ID: 'w1' });
  const when = new Date(2026, 0, 2, 3, 4, 5);

  it("use workflow_lib's format, or the remote-side templates'", () => {
    expect(formatMintLogLine('normal end', fields, when)).toBe('2026/01/02 03:04:05: normal end: abaqus: u1: job-1: r1: w1\n');
    expect(formatMintLogLine('start', fields, when, 'template')).toBe('2026-01-02 03:04:05: start: abaqus: unknown\n');
  });

  it('are written only when asked: MISYSTEM_SITEID alone writes nothing', () => {
    expect(mintLogPath('/x/log', false, { MISYSTEM_SITEID: 'site1' })).toBe('/x/log');
    expect(mintLogPath(undefined, false, { MISYSTEM_SITEID: 'site1' })).toBeUndefined();
    expect(mintLogPath(undefined, true, { MISYSTEM_SITEID: 'site1' })).toBe('/home/misystem/assets/workflow/site1/solver_logs/solver_execute.log');
    expect(() => mintLogPath(undefined, true, { MISYSTEM_SITEID: '..' })).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }));
    expect(() => mintLogPath(undefined, true, {})).toThrow(/MISYSTEM_SITEID/);
  });

  it('never create a directory above the log', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mint-log-'));
    const missing = join(dir, 'solver_logs', 'solver_execute.log');
    await expect(appendMintLog(missing, 'start', fields)).rejects.toMatchObject({ code: 'INPUT_INVALID' });
    expect(existsSync(join(dir, 'solver_logs'))).toBe(false);
    const present = join(dir, 'solver_execute.log');
    await appendMintLog(present, 'start', fields, 'template');
    expect(await readFile(present, 'utf8')).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d: start: abaqus: unknown\n$/);
  });
});
