/**
 * The hostile suite's relevant rows again, against a `--scheduler slurm` gateway on the private
 * Slurm (test/gateway/hostile.test.ts holds the full tables against a plain gateway): through the
 * real sshd and the real gateway, every verb that reaches the scheduler with shell metacharacters,
 * control bytes and path tricks appended; malformed resources in a startx request (not numbers,
 * zero, signs, exponents, too long, twice, a kind the gateway does not know) and resources over a
 * site maximum; program arguments and client variables that look like sbatch options or shell
 * code, which must reach the program as plain bytes and never sbatch or a shell; a client trying
 * to set SLURM_CONF. After all of it: no canary file exists, and Slurm received exactly the
 * submissions the accepted requests made (its slurmctld log counts them).
 * The gateway's own options (--scheduler-args abuse) fail closed at E_CONFIG: request.test.ts and
 * the installers' tests. Skipped only where not root, with the reason printed.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDir } from '../support/fixture.js';
import { useSiteSandbox } from '../support/site-account.js';
import { EXIT, MSG_BYTES, MSG_JOB, gatewayStderr, openGateway, refusalLine, sshCli, type ErrorName, type GatewaySession } from '../support/hostile-helpers.js';
import { slurmUnavailable, useSlurm } from '../support/slurm.js';

const why = slurmUnavailable();
if (why) process.stdout.write(`[cluster tests] skipped: ${why}\n`);

const CANARY = `/tmp/mint-pwned-slurm-${randomBytes(6).toString('hex')}`;
const hex = (s: string): string => Buffer.from(s).toString('hex');

describe.skipIf(why !== undefined)('the hostile suite against a --scheduler slurm gateway', { timeout: 180_000 }, () => {
  const slurm = useSlurm({ cpus: 2 });
  // MInt's key logs into an unprivileged account, as on a site: the scheduler runs its jobs as it.
  const sandbox = useSiteSandbox({ program: '/bin/true' });
  let gw: GatewaySession;
  const LIVE = randomUUID();
  const GHOST = randomUUID();
  const submissions = (): number => (readFileSync(join(slurm().dir, 'log', 'slurmctld.log'), 'utf8').match(/_slurm_rpc_submit_batch_job: JobId=/g) ?? []).length;
  let submittedBefore = 0;
  let accepted = 0;

  beforeAll(async () => {
    await sandbox().reinstall({ scheduler: 'slurm', env: [`SLURM_CONF=${slurm().conf}`], allowEnv: ['MINT_CASE'], maxCpus: 2, maxMemoryMb: 1000, maxWalltimeMin: 30 });
    await writeFile(sandbox().program, '#!/bin/sh\nprintf "arg:%s\\n" "$@"\nprintf "case:%s\\n" "${MINT_CASE:-}"\nprintf "conf:%s\\n" "${SLURM_CONF:-unset}"\n');
    gw = await openGateway(sandbox(), 4);
    submittedBefore = submissions();
    const started = await gw.run(`mint-gw start ${LIVE} x`);
    expect(started.exitCode, started.stderr).toBe(0);
    accepted += 1;
  }, 60_000);
  afterAll(() => gw?.close());

  const expectRefused = (r: { exitCode?: number | undefined; stderr: string; stdout: Buffer | string }, code: ErrorName, message: string | RegExp): void => {
    const stderr = gatewayStderr(r.stderr);
    expect(r.exitCode, stderr).toBe(EXIT[code]);
    if (typeof message === 'string') expect(stderr).toBe(refusalLine(code, message));
    else expect(stderr).toMatch(message);
    expect(r.stdout.toString()).toBe('');
  };

  const VERBS = [
    `mint-gw start ${GHOST} x`,
    `mint-gw run ${GHOST} x`,
    `mint-gw status ${LIVE}`,
    `mint-gw logs ${LIVE} 0`,
    `mint-gw cancel ${LIVE}`,
    `mint-gw rm ${LIVE}`,
    'mint-gw probe',
    'mint-gw list',
  ];
  const PAYLOADS: Array<[string, string]> = [
    ['semicolon', `;touch ${CANARY}`],
    ['$()', ` $(touch ${CANARY})`],
    ['backticks', ` \`touch ${CANARY}\``],
    ['pipe', ` | tee ${CANARY}`],
    ['newline', `\ntouch ${CANARY}`],
    ['&&', ` && touch ${CANARY}`],
    ['${IFS}', `\${IFS}touch\${IFS}${CANARY}`],
    ['redirect', ` >${CANARY}`],
    ['single quotes', " '--wrap=id'"],
    ['glob', ' *'],
    ['tab', `\t--wrap=touch\t${CANARY}`],
    ['path', ' --output=../../etc/x'],
  ];
  const injections = VERBS.flatMap((command) => PAYLOADS.map(([what, payload]) => [`${command.split(' ')[1]} + ${what}`, command + payload] as const));

  it.each(injections)('%s -> 64, refused before anything runs', async (_name, command) => {
    expectRefused(await gw.run(command), 'E_USAGE', MSG_BYTES);
  });

  it.each([
    ['job id with a scheduler option', 'mint-gw status --jobs=1', MSG_JOB],
    ['cancel of a Slurm id instead of a job', 'mint-gw cancel 1', MSG_JOB],
    ['start with an sbatch-like id', 'mint-gw start --wrap=id', MSG_JOB],
  ])('%s -> 64', async (_name, command, message) => {
    expectRefused(await gw.run(command), 'E_USAGE', message);
  });

  const startx = (body: string, job = randomUUID()): Promise<{ exitCode?: number | undefined; stderr: string; stdout: string }> =>
    sshCli(sandbox(), [`${sandbox().user}@127.0.0.1`, `mint-gw startx ${job}`], { input: body }).then((r) => ({ exitCode: r.code ?? undefined, stderr: r.stderr, stdout: r.stdout }));

  it.each([
    ['cpus 1;id', `cpus ${hex('1;id')}\n`, 'cpus must be a whole number from 1'],
    ['cpus $(id)', `cpus ${hex('$(id)')}\n`, 'cpus must be a whole number from 1'],
    ['cpus 0', `cpus ${hex('0')}\n`, 'cpus must be a whole number from 1'],
    ['cpus -1', `cpus ${hex('-1')}\n`, 'cpus must be a whole number from 1'],
    ['cpus 01 (octal-looking)', `cpus ${hex('01')}\n`, 'cpus must be a whole number from 1'],
    ['memory 1e3', `memory_mb ${hex('1e3')}\n`, 'memory_mb must be a whole number from 1'],
    ['walltime with a space', `walltime_min ${hex('1 --wrap=id')}\n`, 'walltime_min must be a whole number from 1'],
    ['walltime 1:00', `walltime_min ${hex('1:00')}\n`, 'walltime_min must be a whole number from 1'],
    ['nodes 10 digits', `nodes ${hex('1234567890')}\n`, 'nodes is too large'],
    ['cpus twice', `cpus ${hex('1')}\ncpus ${hex('2')}\n`, 'cpus is given twice'],
    ['a kind the gateway does not know (partition)', `partition ${hex('debug')}\n`, "request lines are 'program HEX', 'arg HEX' or 'env HEX'"],
    ['an sbatch option as a line', `--wrap ${hex('id')}\n`, "request lines are 'program HEX', 'arg HEX' or 'env HEX'"],
    ['uppercase hex', `cpus ${hex('1').toUpperCase()}A\n`, 'a request value must be lowercase hex'],
    ['a client setting SLURM_CONF', `env ${hex('SLURM_CONF=/tmp/evil.conf')}\n`, 'the site does not let a client set SLURM_CONF (its --allow-env: MINT_CASE)'],
    ['a client setting SLURM_JOB_ID', `env ${hex('SLURM_JOB_ID=1')}\n`, 'the site does not let a client set SLURM_JOB_ID (its --allow-env: MINT_CASE)'],
  ])('startx with %s -> 64, nothing submitted', async (_name, body, message) => {
    expectRefused(await startx(body), 'E_USAGE', message);
  });

  it.each([
    ['cpus 3', `cpus ${hex('3')}\n`, 'cpus 3 is over the site maximum of 2 per job'],
    ['memory 1001', `memory_mb ${hex('1001')}\n`, 'memory (MB) 1001 is over the site maximum of 1000 per job'],
    ['walltime 31', `walltime_min ${hex('31')}\n`, 'walltime (minutes) 31 is over the site maximum of 30 per job'],
  ])('startx with %s -> 69 (never clamped), nothing submitted', async (_name, body, message) => {
    expectRefused(await startx(body), 'E_LIMIT', message);
  });

  it('arguments and variables that look like sbatch options or shell code reach the program as plain bytes, never sbatch or a shell', async () => {
    const job = randomUUID();
    const args = ['--wrap=touch ' + CANARY, `--output=${CANARY}`, '-J', 'x;touch ' + CANARY, `$(touch ${CANARY})`, `\`touch ${CANARY}\``, "'\"\\", 'line\nbreak'];
    const value = `$(touch ${CANARY});--chdir=/`;
    const body = [...args.map((a) => `arg ${hex(a)}`), `env ${hex(`MINT_CASE=${value}`)}`, ''].join('\n');
    const r = await startx(body, job);
    expect(r.exitCode, r.stderr).toBe(0);
    accepted += 1;
    const dir = join(sandbox().root, job);
    for (const deadline = Date.now() + 30_000; !existsSync(join(dir, 'exit')); ) {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((res) => setTimeout(res, 200));
    }
    const log = await readFile(join(dir, 'remote_program_exec.log'), 'utf8');
    // SLURM_CONF is the site's (its --env), which a client cannot set (the rows above).
    expect(log).toBe(`${args.map((a) => `arg:${a}\n`).join('')}case:${value}\nconf:${slurm().conf}\n`);
    // sbatch got the gateway's own --output: Slurm wrote its file in the job dir, nowhere else.
    expect(existsSync(join(dir, 'sched.out'))).toBe(true);
    expect(readFileSync(join(dir, 'batch.sh'), 'utf8')).toMatch(/^#!\/bin\/sh\nexec \S+ --root \S+ --grace \d+ --key-name [A-Za-z0-9._@-]+ --run-sched \S+\n$/);
  });

  it('afterwards: no canary exists, and Slurm got exactly the accepted submissions', () => {
    expect(existsSync(CANARY)).toBe(false);
    expect(submissions() - submittedBefore).toBe(accepted);
  });
});
