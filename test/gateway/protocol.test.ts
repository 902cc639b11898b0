import { describe, expect, it } from 'vitest';
import {
  checkCompatible,
  checkJobId,
  checkProgramArgs,
  formatRequest,
  formatCommand,
  parseList,
  parseLogTrailer,
  parseProbe,
  shellNoise,
  SHELL_CLEAN_HINT,
  parseSentLine,
  parseStartedLine,
  parseRefusal,
  parseStatus,
  parseSchedLine,
  checkResources,
  refusalError,
} from '../../src/gateway/protocol.js';
import { splitLines } from '../../src/connection/exec.js';

const JOB = '123e4567-e89b-42d3-a456-426614174000';

describe('gateway protocol (pure)', () => {
  it('formats the commands the gateway accepts', () => {
    expect(formatCommand({ verb: 'probe' })).toBe('mint-gw probe');
    expect(formatCommand({ verb: 'put', job: JOB, caps: '.iLsfxCIvu' })).toBe(`mint-gw put ${JOB} .iLsfxCIvu`);
    expect(formatCommand({ verb: 'start', job: JOB, args: ['a=1', 'b.dat'] })).toBe(`mint-gw start ${JOB} a=1 b.dat`);
    expect(formatCommand({ verb: 'logs', job: JOB, offset: 42 })).toBe(`mint-gw logs ${JOB} 42`);
  });

  it('refuses to format what the gateway would refuse', () => {
    expect(() => formatCommand({ verb: 'status', job: JOB.toUpperCase() })).toThrow(TypeError);
    expect(() => formatCommand({ verb: 'put', job: JOB, caps: '.iL;id' })).toThrow(TypeError);
    expect(() => formatCommand({ verb: 'logs', job: JOB, offset: -1 })).toThrow(TypeError);
    // Program arguments are the caller's input: one validator, one way of failing (InputError).
    // Any UTF-8 text is a valid argument; outside start's plain class it needs startx/runx.
    expect(() => formatCommand({ verb: 'start', job: JOB, args: ['a b'] })).toThrow(/need startx\/runx/);
    expect(() => formatCommand({ verb: 'start', job: JOB, args: ['a\u0000b'] })).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }));
    expect(() => checkProgramArgs(['ok', 'x'.repeat(4097)])).toThrow(/1-4096 bytes/);
    expect(checkProgramArgs(['model/a b.inp', '応力', '$HOME'])).toHaveLength(3);
    expect(formatRequest({ program: 'aster', args: ['応力'], env: { A: 'b c' } })).toBe(`program ${Buffer.from('aster').toString('hex')}\narg e5bf9ce58a9b\nenv ${Buffer.from('A=b c').toString('hex')}\n`);
    expect(() => checkProgramArgs(Array(65).fill('a'), { jobId: JOB })).toThrow(expect.objectContaining({ code: 'INPUT_INVALID', jobId: JOB, message: expect.stringMatching(/at most 64/) }));
    expect(checkProgramArgs(['--flag=1', 'file.dat'])).toEqual(['--flag=1', 'file.dat']);
    expect(() => checkJobId('NOT-A-UUID')).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }));
  });

  it('reads status, list, probe and the logs trailer', () => {
    expect(parseStatus(`mint-gw=2\njob=${JOB}\nstate=exited\nexit=3\nlog_bytes=10\n`)).toEqual({ jobId: JOB, state: 'exited', exitCode: 3, pid: undefined, logBytes: 10 });
    expect(() => parseStatus('garbage')).toThrow(expect.objectContaining({ code: 'GATEWAY_PROTOCOL' }));
    expect(() => parseStatus(`mint-gw=3\njob=${JOB}\nstate=exited\n`)).toThrow(expect.objectContaining({ code: 'GATEWAY_INCOMPATIBLE' }));
    expect(parseList(`${JOB} running\n${JOB} exited exit=0\nnot-a-job x\n`)).toEqual([
      { jobId: JOB, state: 'running', exitCode: undefined },
      { jobId: JOB, state: 'exited', exitCode: 0 },
    ]);
    // `list long` (gateway 0.3.1): size and age after the plain fields; the plain lines above still read.
    expect(parseList(`${JOB} exited exit=5 kb=3088 age=7201\n${JOB} running kb=4 age=0\n${JOB} exited exit=0 kb=x\n`)).toEqual([
      { jobId: JOB, state: 'exited', exitCode: 5, sizeKiB: 3088, ageSeconds: 7201 },
      { jobId: JOB, state: 'running', exitCode: undefined, sizeKiB: 4, ageSeconds: 0 },
    ]);
    expect(formatCommand({ verb: 'list', long: true })).toBe('mint-gw list long');
    expect(formatCommand({ verb: 'list' })).toBe('mint-gw list');
    expect(parseLogTrailer(`noise\nmint-gw: status: job=${JOB} state=exited exit=7\n`)).toEqual({ state: 'exited', exitCode: 7 });
    expect(parseLogTrailer(`mint-gw: status: job=${JOB} state=cancelled exit=-\n`)).toEqual({ state: 'cancelled', exitCode: undefined });
    expect(() => parseProbe('Welcome to Ubuntu\n')).toThrow(expect.objectContaining({ code: 'GATEWAY_PROTOCOL' }));
  });

  it('reads a probe answer byte for byte: a banner before it is the login shell, named with the fix', () => {
    expect(parseProbe('mint-gw=2\nversion=0.3.0\n').protocol).toBe(2);
    expect(shellNoise('mint-gw=1\n')).toBeUndefined();
    expect(shellNoise('Welcome to the cluster\nmint-gw=1\n')).toBe('Welcome to the cluster\n');
    // A key=value reader skipped the banner and called the host ready.
    expect(() => parseProbe('Welcome to the cluster\nmint-gw=1\nversion=0.3.0\n')).toThrow(
      expect.objectContaining({ code: 'GATEWAY_PROTOCOL', message: expect.stringContaining('"Welcome to the cluster\\n" (23 bytes)'), hint: SHELL_CLEAN_HINT }),
    );
  });

  it('reads a batch scheduler\'s word: the queued state, status sched_* lines, the sched line on stderr; writes resources', () => {
    expect(parseStatus(`mint-gw=2\njob=${JOB}\nstate=queued\nlog_bytes=0\nsched=slurm\nsched_id=42\nsched_state=PENDING\nsched_reason=Resources\n`)).toEqual({
      jobId: JOB,
      state: 'queued',
      exitCode: undefined,
      pid: undefined,
      logBytes: 0,
      scheduler: { id: '42', state: 'PENDING', reason: 'Resources' },
    });
    expect(parseList(`${JOB} queued\n`)).toEqual([{ jobId: JOB, state: 'queued', exitCode: undefined }]);
    expect(parseStartedLine(`mint-gw: started: job=${JOB} state=queued pid=-\n`)).toEqual({ state: 'queued', pid: undefined });
    expect(parseSchedLine(`mint-gw: sched: job=${JOB} id=42 state=TIMEOUT reason=TimeLimit`)).toEqual({ id: '42', state: 'TIMEOUT', reason: 'TimeLimit' });
    expect(parseSchedLine('mint-gw: sched: job=x id=42')).toBeUndefined();
    expect(formatRequest({ args: ['a'], resources: { cpus: 4, memoryMb: 2000, walltimeMinutes: 90, nodes: 1 } })).toBe(
      `arg 61\ncpus ${Buffer.from('4').toString('hex')}\nmemory_mb ${Buffer.from('2000').toString('hex')}\nwalltime_min ${Buffer.from('90').toString('hex')}\nnodes 31\n`,
    );
    for (const bad of [{ cpus: 0 }, { memoryMb: 1.5 }, { walltimeMinutes: -1 }, { nodes: 1e10 }, { gpus: 1 } as never]) {
      expect(() => checkResources(bad)).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }));
    }
    expect(() => checkResources({ cpus: 2, memoryMb: 1, walltimeMinutes: 1, nodes: 1 })).not.toThrow();
  });

  it('says which side to upgrade when protocols differ', () => {
    const current = parseProbe('mint-gw=2\nversion=0.3.1\n');
    expect(() => checkCompatible(current)).not.toThrow();
    expect(() => checkCompatible({ ...current, protocol: 3 })).toThrow(/upgrade mint-ssh-exec on the MInt side/);
    expect(() => checkCompatible({ ...current, protocol: 1 })).toThrow(/gateway on the external computer/);
  });

  it('turns refusals into typed errors carrying the gateway code', () => {
    expect(parseRefusal('mint-gw: error: E_LIMIT: only 3 MB free\n')).toEqual({ gatewayCode: 'E_LIMIT', message: 'only 3 MB free' });
    expect(refusalError('put', 69, 'mint-gw: error: E_LIMIT: full\n')).toMatchObject({ code: 'GATEWAY_REFUSED', gatewayCode: 'E_LIMIT', exitCode: 69 });
    const noGateway = refusalError('start', 127, 'sh: 1: mint-gw: not found\n');
    expect(noGateway).toMatchObject({ code: 'GATEWAY_PROTOCOL' });
    expect(noGateway.hint).toContain('mint-gateway install');
  });

  it('reads the lines run and take print on stderr', () => {
    expect(parseStartedLine(`mint-gw: started: job=${JOB} state=running pid=42`)).toEqual({ state: 'running', pid: 42 });
    expect(parseStartedLine(`mint-gw: started: job=${JOB} state=exited pid=-`)).toEqual({ state: 'exited', pid: undefined });
    expect(parseStartedLine(`mint-gw: started: job=${JOB} state=bogus pid=1`)).toBeUndefined();
    expect(parseSentLine(`mint-gw: sent: job=${JOB} rsync=0`)).toBe(0);
    expect(parseSentLine(`mint-gw: sent: job=${JOB} rsync=23`)).toBe(23);
    expect(parseSentLine(`mint-gw: sent: job=${JOB} rsync=-1`)).toBeUndefined();
    expect(parseSentLine(`x mint-gw: sent: job=${JOB} rsync=0`)).toBeUndefined();
  });

  it('splits a byte stream into lines across chunks, and still sees a line after 100 KiB of output', () => {
    const lines: string[] = [];
    const feed = splitLines((line) => lines.push(line));
    const flood = `${'warning: something\n'.repeat(6000)}`;
    feed(Buffer.from(flood));
    const euro = Buffer.from('caf\u00e9 ok\nmint-gw: sent: job=j rsync=0\npartial');
    feed(euro.subarray(0, 4)); // cuts the two-byte e-acute in half
    feed(euro.subarray(4));
    expect(lines.length).toBe(6002);
    expect(lines.slice(-2)).toEqual(['caf\u00e9 ok', 'mint-gw: sent: job=j rsync=0']);
    feed(Buffer.from(' end\n'));
    expect(lines.at(-1)).toBe('partial end');
  });
});
