import { describe, expect, it } from 'vitest';
import { formatMintLogLine, mintLogFields, mintLogPath } from '../../src/cli/mint-log.js';

describe('MInt solver_execute.log lines', () => {
  it('use the workflow library format', () => {
    const fields = mintLogFields('abaqus', 'job-1', { MINT_USER_ID: 'u1', MINT_RUN_ID: 'r1', MINT_WORKFLOW_ID: 'w1' });
    expect(formatMintLogLine('normal end', fields, new Date(2026, 0, 2, 3, 4, 5))).toBe('2026/01/02 03:04:05: normal end: abaqus: u1: job-1: r1: w1\n');
  });

  it('go to the explicit path, else MInt\'s site path when MISYSTEM_SITEID is set, else nowhere', () => {
    expect(mintLogPath('/x/log', { MISYSTEM_SITEID: 'site1' })).toBe('/x/log');
    expect(mintLogPath(undefined, { MISYSTEM_SITEID: 'site1' })).toBe('/home/misystem/assets/workflow/site1/solver_logs/solver_execute.log');
    expect(mintLogPath(undefined, { MISYSTEM_SITEID: '../etc' })).toBeUndefined();
    expect(mintLogPath(undefined, {})).toBeUndefined();
  });
});
