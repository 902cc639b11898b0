/**
 * Gateway hardening: every byte of SSH_ORIGINAL_COMMAND is hostile.
 *
 * Each case goes through the real path an attacker holding MInt's key would use: a real OpenSSH sshd,
 * the real `restrict,command="mint-gateway.sh ..."` authorized_keys line, the account's login shell,
 * then the gateway. Requests are made with ssh2 (one connection, at most 4 channels at a time; raw
 * bytes are sent as a Buffer) and, where the client matters, with OpenSSH's ssh, sftp and scp.
 *
 * Threats covered, one table row per distinct hostile input:
 *   1. shell requests, empty commands, subsystems (ssh -s, sftp, scp in both modes)       -> 65 / 66
 *   2. shell metacharacters, control bytes and non-ASCII appended to a valid command, rotating over
 *      all nine verbs (each payload would `touch` a canary path if anything evaluated it)    -> 64
 *   3. malformed tokens: job ids, rsync capability strings, log offsets, program arguments -> 64
 *   4. unknown verbs, wrong first words, argument counts, spacing, over-long commands       -> 64
 *   5. state abuse: put after start, verbs on missing jobs, start racing itself              -> 68 / 67
 *   6. confinement, checked after all of the above: nothing outside jobs/ changed, jobs/ holds only
 *      the jobs that legitimate steps made, no canary exists, and the audit log holds exactly one
 *      refused line per refusal that reached the gateway.
 * Every refusal is asserted as exit status + the exact one-line `mint-gw: error: E_X: ...` message +
 * empty stdout; the message pins which check refused it, so a row whose token passes the byte
 * allow-list proves the token's own pattern check, not just the allow-list.
 *
 * NOT covered here: rsync-protocol attacks through an accepted put/get (hostile-rsync.test.ts), the
 * gateway's own options and E_CONFIG (fragments/install tests), E_LIMIT (limits.test.ts), port/X11/
 * agent forwarding (refused by sshd's `restrict`, not by the gateway), sshd or ssh2 bugs, a hostile
 * remote program (it is the site's own code), and `set -f` on its own: the allow-list admits no glob
 * character, so removing `set -f` alone is not observable from outside.
 *
 * The weaknesses this suite found (W1-W5) are fixed in the gateway; their tests stay as regressions.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../src/connection/connect.js';
import { resolveHost } from '../../src/config/resolve-host.js';
import { execCollect, type ExecResult } from '../../src/connection/exec.js';
import { freshDir, useSandbox } from '../support/fixture.js';
import {
  EXIT,
  MSG_BYTES,
  gatewayStderr,
  MSG_CAPS,
  MSG_JOB,
  MSG_SPACES,
  RefusalTally,
  countRefusals,
  diffTrees,
  openGateway,
  readAudit,
  refusalLine,
  runCli,
  snapshotTree,
  sshCli,
  sshOptions,
  writeRshWrapper,
  type ErrorName,
  type GatewaySession,
  type NodeInfo,
} from '../support/hostile-helpers.js';

// Canaries: every injection payload that could create a file names one of these.
const TOKEN = randomBytes(6).toString('hex');
const CANARY = `mint-pwned-${TOKEN}`;
const pwned = (n: string): string => `/tmp/${CANARY}-${n}`;
const pwnedRel = (n: string): string => `${CANARY}-${n}`; // lands in the gateway's cwd ($HOME) if run

// Jobs made by legitimate steps in beforeAll; nothing else may ever appear under jobs/.
const LIVE = randomUUID(); // started and exited
const CREATED = randomUUID(); // uploaded, never started
const CANCELLED = randomUUID(); // uploaded, then cancelled before start
const RUNNING = randomUUID(); // running `sleep 300` until class 5 cancels it
const COUNTED = randomUUID(); // started by class 5 (once, then again and concurrently)
const LEGIT_JOBS = [LIVE, CREATED, CANCELLED, RUNNING, COUNTED];
// Never created: hostile put/start rows name GHOST, missing-job rows name MISSING.
const GHOST = randomUUID();
const MISSING = randomUUID();
const CAPS = '.iLsfxCIvu';
const LIVE_ARG = 'hostile-suite-live-job';
const LIVE_LOG = `args: ${LIVE_ARG}\n`;

const MSG_SUBSYSTEM = 'subsystems (sftp, scp) are refused for this key';
const MSG_NOCOMMAND = 'this key runs only mint-gw commands; interactive shells are refused';
const MSG_OFFSET = 'log offset must be a decimal byte count';
const unknownCommand = (w: string): string => `unknown command '${w}' (this key runs only mint-gw)`;
const unknownVerb = (v: string): string => `unknown verb '${v}'`;
const TAKES = {
  probe: "'probe' takes no arguments",
  list: "'list' takes no arguments, or long",
  put: "'put' takes JOB CAPS",
  get: "'get' takes JOB [CAPS]",
  start: "'start' takes JOB [ARG...] (at most 64 arguments)",
  run: "'run' takes JOB [ARG...] (at most 64 arguments)",
  take: "'take' takes JOB [CAPS]",
  status: "'status' takes JOB",
  logs: "'logs' takes JOB OFFSET",
  cancel: "'cancel' takes JOB",
  rm: "'rm' takes JOB",
} as const;

/** A table row: a hostile command, the refusal it must get, and the exact message. */
interface Row {
  name: string;
  command: string | Buffer;
  code: ErrorName;
  message: string;
}
const row = (name: string, command: string | Buffer, code: ErrorName, message: string): Row => ({ name, command, code, message });
const usage = (name: string, command: string | Buffer, message: string): Row => row(name, command, 'E_USAGE', message);

// ---------------------------------------------------------------------------------------------------
// Class 2: injection payloads appended to an otherwise valid command of every verb.

const VALID: ReadonlyArray<readonly [string, string]> = [
  ['probe', 'mint-gw probe'],
  ['list', 'mint-gw list'],
  ['put', `mint-gw put ${GHOST} ${CAPS}`],
  ['get', `mint-gw get ${LIVE} ${CAPS}`],
  ['take', `mint-gw take ${LIVE} ${CAPS}`],
  ['start', `mint-gw start ${GHOST} x=1`],
  ['run', `mint-gw run ${GHOST} x=1`],
  ['status', `mint-gw status ${LIVE}`],
  ['logs', `mint-gw logs ${LIVE} 0`],
  ['cancel', `mint-gw cancel ${LIVE}`],
  ['rm', `mint-gw rm ${LIVE}`],
];

const PAYLOADS: ReadonlyArray<readonly [string, string | Buffer]> = [
  ['semicolon', `;touch ${pwned('semi')}`],
  ['&&', ` && touch ${pwned('and')}`],
  ['||', `||touch ${pwnedRel('or')}`],
  ['pipe', ` | tee ${pwned('pipe')}`],
  ['background &', ` & touch ${pwnedRel('bg')}`],
  ['backticks', ` \`touch ${pwned('tick')}\``],
  ['$()', ` $(touch ${pwned('subst')})`],
  ['${IFS}', `\${IFS}touch\${IFS}${pwnedRel('ifs')}`],
  ['newline', `\ntouch ${pwned('nl')}`],
  ['carriage return', `\rtouch ${pwnedRel('cr')}`],
  ['vertical tab', ` \x0btouch ${pwnedRel('vt')}`],
  ['tab', `\ttouch\t${pwnedRel('tab')}`],
  ['\\x01 (next to NUL)', ` \x01touch ${pwnedRel('soh')}`],
  ['DEL \\x7f', ` x\x7f;touch ${pwnedRel('del')}`],
  ['ESC sequences', ` \x1b[2J\x1b]0;${pwnedRel('esc')}\x07`],
  ['single quotes', ` 'a b' ${pwnedRel('sq')}`],
  ['double quotes', ` "$HOME" ${pwnedRel('dq')}`],
  ['backslash', ` a\\ b\\;touch ${pwnedRel('bs')}`],
  ['redirect >', ` >${pwned('gt')}`],
  ['redirect <', ' </etc/passwd'],
  ['glob *', ' *'],
  ['glob ?', ' ????????'],
  ['glob [', ' [a-z]*'],
  ['tilde', ' ~root'],
  ['comment #', ` #${pwnedRel('hash')}`],
  ['history !', ' !!'],
  ['brace expansion', ` {a,b}${pwnedRel('brace')}`],
  ['subshell ()', ` (touch ${pwnedRel('paren')})`],
  ['path ../', ' ../../etc'],
  ['UTF-8 e-acute', ' r\u00e9sum\u00e9'],
  ['fullwidth semicolon U+FF1B', `\uff1btouch ${pwnedRel('fw')}`],
  ['byte 0xff (not UTF-8)', Buffer.from([0x20, 0xff, 0x3b, ...Buffer.from(`touch ${pwnedRel('ff')}`)])],
  ['byte 0xa0 (NBSP) as separator', Buffer.from([0xa0, ...Buffer.from(`touch ${pwnedRel('nbsp')}`)])],
];

// Each payload goes to one verb, rotating through the eleven, so every verb gets three
// different payloads. (Every gateway run here costs a full SSH session with the account's login
// shell, so a full cross product would cost ~300 sessions for no extra coverage of the one allow-list.)
const injectionRows: Row[] = PAYLOADS.map(([what, payload], i) => {
  const [verb, command] = VALID[i % VALID.length]!;
  return usage(`${verb} + ${what}`, typeof payload === 'string' ? command + payload : Buffer.concat([Buffer.from(command), payload]), MSG_BYTES);
});

// ---------------------------------------------------------------------------------------------------
// Class 3: malformed tokens.

const upper = LIVE.toUpperCase();
const tokenRows: Row[] = [
  // Job ids. Rows whose id passes the byte allow-list prove the UUID pattern itself.
  usage('job id uppercase', `mint-gw status ${upper}`, MSG_JOB),
  usage('job id 35 chars', `mint-gw status ${LIVE.slice(0, 35)}`, MSG_JOB),
  usage('job id 37 chars', `mint-gw status ${LIVE}0`, MSG_JOB),
  usage('job id ..', 'mint-gw status ..', MSG_JOB),
  usage('job id .', 'mint-gw status .', MSG_JOB),
  usage('rm ..', 'mint-gw rm ..', MSG_JOB),
  usage('rm .', 'mint-gw rm .', MSG_JOB),
  usage('rm ../../etc', 'mint-gw rm ../../etc', MSG_BYTES),
  usage('get /etc/passwd', `mint-gw get /etc/passwd ${CAPS}`, MSG_BYTES),
  usage('put ../../etc', `mint-gw put ../../etc ${CAPS}`, MSG_BYTES),
  usage('logs absolute path', 'mint-gw logs /tmp 0', MSG_BYTES),
  usage('job id with g', `mint-gw status ${LIVE.slice(0, 35)}g`, MSG_JOB),
  usage('job id without dashes', `mint-gw status ${LIVE.replace(/-/g, '')}`, MSG_JOB),
  usage('job id dashes shifted', `mint-gw status ${'a'.repeat(9)}-${'b'.repeat(3)}-cccc-dddd-${'e'.repeat(12)}`, MSG_JOB),
  usage('job id with . for -', `mint-gw status ${LIVE.replace(/-/g, '.')}`, MSG_JOB),
  usage('job id with = for -', `mint-gw status ${LIVE.replace(/-/g, '=')}`, MSG_JOB),
  usage('cancel -rf', 'mint-gw cancel -rf', MSG_JOB),
  usage('start --help', 'mint-gw start --help', MSG_JOB),
  usage('status of the audit log', 'mint-gw status .mint-gateway-audit.log', MSG_JOB),
  usage('start ..', 'mint-gw start ..', MSG_JOB),
  usage('run ..', 'mint-gw run ..', MSG_JOB),
  usage('run --help', 'mint-gw run --help', MSG_JOB),
  usage('take ..', `mint-gw take .. ${CAPS}`, MSG_JOB),
  usage('take /etc', `mint-gw take /etc ${CAPS}`, MSG_BYTES),
  usage('put .', `mint-gw put . ${CAPS}`, MSG_JOB),
  usage('get ..', `mint-gw get .. ${CAPS}`, MSG_JOB),
  usage('logs uppercase job', `mint-gw logs ${upper} 0`, MSG_JOB),
  usage('job id ending in .', 'mint-gw status 00000000-0000-0000-0000-00000000000.', MSG_JOB),
  usage('job id ending in %', `mint-gw status ${LIVE.slice(0, 35)}%`, MSG_JOB),
  usage('empty job id', 'mint-gw status ', MSG_SPACES),
  // rsync capability strings (the only thing a client adds to rsync's server argv).
  usage('caps -e', `mint-gw put ${GHOST} -e`, MSG_CAPS),
  usage('caps --rsh=x', `mint-gw put ${GHOST} --rsh=x`, MSG_CAPS),
  usage('caps .iLs;id', `mint-gw put ${GHOST} .iLs;id`, MSG_BYTES),
  usage('caps .iLs/x', `mint-gw put ${GHOST} .iLs/x`, MSG_BYTES),
  usage('caps 33 bytes', `mint-gw put ${GHOST} .${'a'.repeat(32)}`, 'rsync capabilities too long'),
  usage('caps ..x', `mint-gw put ${GHOST} ..x`, MSG_CAPS),
  usage('caps without dot', `mint-gw put ${GHOST} iLsfxCIvu`, MSG_CAPS),
  usage('caps two dots', `mint-gw get ${LIVE} .iLs.x`, MSG_CAPS),
  usage('caps letter before dot', `mint-gw get ${LIVE} 1a.iLs`, MSG_CAPS),
  usage('caps with -', `mint-gw get ${LIVE} .iLs-x`, MSG_CAPS),
  usage('caps with =', `mint-gw put ${GHOST} .iLs=x`, MSG_CAPS),
  usage('caps with ,', `mint-gw put ${GHOST} .iLs,x`, MSG_CAPS),
  usage('caps with :', `mint-gw get ${LIVE} .iLs:x`, MSG_CAPS),
  usage('caps with @', `mint-gw put ${GHOST} .iLs@x`, MSG_CAPS),
  usage('caps with %', `mint-gw put ${GHOST} .iLs%x`, MSG_CAPS),
  usage('caps with +', `mint-gw put ${GHOST} .iLs+x`, MSG_CAPS),
  usage('caps as full rsync flags', `mint-gw get ${LIVE} -tre.iLs`, MSG_CAPS),
  usage('caps -e.iLsfxCIvu', `mint-gw get ${LIVE} -e.iLsfxCIvu`, MSG_CAPS),
  usage('caps digit after dot', `mint-gw get ${LIVE} 31.iLs9`, MSG_CAPS),
  usage('caps .--server', `mint-gw put ${GHOST} .--server`, MSG_CAPS),
  usage('caps 1.2.x', `mint-gw get ${LIVE} 1.2.x`, MSG_CAPS),
  usage('take caps -e', `mint-gw take ${LIVE} -e`, MSG_CAPS),
  usage('take caps --remove-source-files', `mint-gw take ${LIVE} --remove-source-files`, MSG_CAPS),
  usage('take caps two dots', `mint-gw take ${LIVE} .iLs.x`, MSG_CAPS),
  // Log offsets.
  usage('offset -1', `mint-gw logs ${LIVE} -1`, MSG_OFFSET),
  usage('offset 1e3', `mint-gw logs ${LIVE} 1e3`, MSG_OFFSET),
  usage('offset hex', `mint-gw logs ${LIVE} 0x10`, MSG_OFFSET),
  usage('offset 16 digits', `mint-gw logs ${LIVE} 1234567890123456`, 'log offset too large'),
  usage('offset 20 digits', `mint-gw logs ${LIVE} 99999999999999999999`, 'log offset too large'),
  usage('offset +5', `mint-gw logs ${LIVE} +5`, MSG_OFFSET),
  usage('offset 1.5', `mint-gw logs ${LIVE} 1.5`, MSG_OFFSET),
  usage('offset 1,000', `mint-gw logs ${LIVE} 1,000`, MSG_OFFSET),
  usage('offset Infinity', `mint-gw logs ${LIVE} Infinity`, MSG_OFFSET),
  usage('offset arithmetic 1+1', `mint-gw logs ${LIVE} 1+1`, MSG_OFFSET),
  usage('offset fullwidth digit', `mint-gw logs ${LIVE} \uff11`, MSG_BYTES),
  // Program arguments.
  usage('arg with /', `mint-gw start ${GHOST} a/b`, MSG_BYTES),
  usage('arg single-quoted', `mint-gw start ${GHOST} 'quoted'`, MSG_BYTES),
  usage('arg double-quoted', `mint-gw start ${GHOST} "x"`, MSG_BYTES),
  usage('arg $HOME', `mint-gw start ${GHOST} $HOME`, MSG_BYTES),
  usage('arg x=$(id)', `mint-gw start ${GHOST} x=$(id)`, MSG_BYTES),
  usage('arg 256 bytes', `mint-gw start ${GHOST} ${'a'.repeat(256)}`, 'program argument longer than 255 bytes'),
  usage('second arg 256 bytes', `mint-gw start ${GHOST} ok ${'b'.repeat(256)}`, 'program argument longer than 255 bytes'),
  usage('65 args', `mint-gw start ${GHOST} ${Array.from({ length: 65 }, (_, i) => `a${i}`).join(' ')}`, TAKES.start),
  usage('run arg with /', `mint-gw run ${GHOST} a/b`, MSG_BYTES),
  usage('run arg 256 bytes', `mint-gw run ${GHOST} ${'a'.repeat(256)}`, 'program argument longer than 255 bytes'),
  usage('run 65 args', `mint-gw run ${GHOST} ${Array.from({ length: 65 }, (_, i) => `a${i}`).join(' ')}`, TAKES.run),
  usage('arg with a space inside (double space)', `mint-gw start ${GHOST} a  b`, MSG_SPACES),
];

// ---------------------------------------------------------------------------------------------------
// Class 4: verbs, first words, argument counts, spacing, length.

const longStatus = (total: number): string => `mint-gw status ${'a'.repeat(total - 'mint-gw status '.length)}`;
const shapeRows: Row[] = [
  ...['exec', 'shell', 'PROBE', 'help', '--help', '-h', 'run-job', '--run-job', 'eval', 'puts', 'statu', 'Rm', 'version', 'probe=1', 'sftp', 'RUN', 'runs', 'takes', 'get-rm'].map((v) =>
    usage(`unknown verb ${v}`, `mint-gw ${v}`, unknownVerb(v)),
  ),
  usage('rsync server for upload', 'rsync --server -tre.iLsfxCIvu . x', unknownCommand('rsync')),
  usage('rsync server for download', 'rsync --server --sender -tre.iLsfxCIvu . .', unknownCommand('rsync')),
  usage('sh -c id', 'sh -c id', unknownCommand('sh')),
  usage('/bin/sh', '/bin/sh', MSG_BYTES),
  usage('mint-gw2 probe', 'mint-gw2 probe', unknownCommand('mint-gw2')),
  usage('MINT-GW probe', 'MINT-GW probe', unknownCommand('MINT-GW')),
  usage('mint-gw-probe', 'mint-gw-probe', unknownCommand('mint-gw-probe')),
  usage('mint_gw probe', 'mint_gw probe', unknownCommand('mint_gw')),
  usage('./mint-gw probe', './mint-gw probe', MSG_BYTES),
  usage('mint-gw.sh probe', 'mint-gw.sh probe', unknownCommand('mint-gw.sh')),
  usage('exec mint-gw probe', 'exec mint-gw probe', unknownCommand('exec')),
  usage('env mint-gw probe', 'env mint-gw probe', unknownCommand('env')),
  usage('runner mode --run-job', `--run-job ${GHOST} x`, unknownCommand('--run-job')),
  usage('gateway option --root', '--root . --program id', unknownCommand('--root')),
  usage('bash', 'bash', unknownCommand('bash')),
  usage('whoami', 'whoami', unknownCommand('whoami')),
  usage('mint-gw without verb', 'mint-gw', 'missing verb'),
  usage('probe x', 'mint-gw probe x', TAKES.probe),
  usage('list x', 'mint-gw list x', TAKES.list),
  usage('put without args', 'mint-gw put', TAKES.put),
  usage('put without caps', `mint-gw put ${GHOST}`, TAKES.put),
  usage('put extra arg', `mint-gw put ${GHOST} ${CAPS} x`, TAKES.put),
  usage('get without args', 'mint-gw get', TAKES.get),
  usage('get extra arg', `mint-gw get ${LIVE} ${CAPS} .`, TAKES.get),
  usage('start without job', 'mint-gw start', TAKES.start),
  usage('run without job', 'mint-gw run', TAKES.run),
  usage('take without args', 'mint-gw take', TAKES.take),
  usage('take extra arg', `mint-gw take ${LIVE} ${CAPS} .`, TAKES.take),
  usage('status without job', 'mint-gw status', TAKES.status),
  usage('status two jobs', `mint-gw status ${LIVE} ${LIVE}`, TAKES.status),
  usage('logs without args', 'mint-gw logs', TAKES.logs),
  usage('logs without offset', `mint-gw logs ${LIVE}`, TAKES.logs),
  usage('logs extra arg', `mint-gw logs ${LIVE} 0 0`, TAKES.logs),
  usage('cancel without job', 'mint-gw cancel', TAKES.cancel),
  usage('cancel extra arg', `mint-gw cancel ${LIVE} x`, TAKES.cancel),
  usage('rm without job', 'mint-gw rm', TAKES.rm),
  usage('rm two jobs', `mint-gw rm ${LIVE} ${CREATED}`, TAKES.rm),
  usage('leading space', ' mint-gw probe', MSG_SPACES),
  usage('trailing space', 'mint-gw probe ', MSG_SPACES),
  usage('double space after mint-gw', 'mint-gw  probe', MSG_SPACES),
  usage('double space before job', `mint-gw status  ${LIVE}`, MSG_SPACES),
  usage('trailing space after rm job', `mint-gw rm ${LIVE} `, MSG_SPACES),
  usage('a single space', ' ', MSG_SPACES),
  usage('two spaces', '  ', MSG_SPACES),
  usage('exactly 4096 bytes (length limit is not off by one)', longStatus(4096), MSG_JOB),
  usage('4097 bytes', longStatus(4097), 'command longer than 4096 bytes'),
  usage('64 KiB', longStatus(65536), 'command longer than 4096 bytes'),
  usage('4097 bytes of ;touch', `mint-gw probe${`;touch ${pwned('long')}`.repeat(300)}`.slice(0, 4097), 'command longer than 4096 bytes'),
];

// ---------------------------------------------------------------------------------------------------

const PROGRAM = (counter: string): string => `#!/bin/sh
# Program for the hostile suite. \`count\` appends one line to a file outside the job and outside the
# sandbox, so the test can tell how many times the program really ran.
echo "args: $*"
case "\${1:-}" in
  count) printf 'ran %s\\n' "$MINT_JOB_ID" >>'${counter}' ;;
  sleep) sleep "\${2:-30}" ;;
esac
exit 0
`;

// Generous limits: a loaded machine can stall an SSH session's login shell for seconds.
describe('gateway hardening: hostile SSH_ORIGINAL_COMMAND', { timeout: 180_000 }, async () => {
  const outside = await freshDir(); // program source, counter, rsh wrapper, upload source: never inside the sandbox
  const counter = join(outside, 'counter');
  const programPath = join(outside, 'prog.sh');
  await writeFile(programPath, PROGRAM(counter));
  await chmod(programPath, 0o755);
  const sandbox = useSandbox({ program: programPath });

  let gw: GatewaySession;
  let before: Map<string, NodeInfo>;
  const tally = new RefusalTally();
  const outsideJobs = (rel: string): boolean => rel === 'sshd.log' || rel === 'jobs' || rel.startsWith('jobs/');

  /** Asserts a refusal precisely: exit status, the single stderr line, no stdout. */
  const expectRefused = (r: ExecResult, code: ErrorName, message: string, ex = expect): void => {
    tally.add(code);
    ex({ exit: r.exitCode, stderr: gatewayStderr(r.stderr), stdout: r.stdout.toString('latin1') }).toEqual({
      exit: EXIT[code],
      stderr: refusalLine(code, message),
      stdout: '',
    });
  };
  /** For the known-weakness rows: count whatever refusal the gateway actually logged. */
  const tallyObserved = (r: ExecResult): void => {
    const m = /^mint-gw: error: (E_[A-Z]+): /.exec(gatewayStderr(r.stderr));
    if (m && r.exitCode !== undefined && r.exitCode >= 64 && r.exitCode <= 79) tally.add(m[1] as ErrorName);
  };
  const auditSize = async (): Promise<number> => (await readAudit(sandbox().root)).length;
  const waitForState = async (job: string, state: RegExp): Promise<string> => {
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
      const out = (await gw.run(`mint-gw status ${job}`)).stdout.toString();
      if (state.test(out)) return out;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`job ${job} never reached ${state}`);
  };

  beforeAll(async () => {
    before = await snapshotTree(sandbox().dir, outsideJobs);
    gw = await openGateway(sandbox(), 4);
    // Legitimate steps that make the jobs the hostile rows aim at.
    const rsh = await writeRshWrapper(sandbox(), outside);
    const src = join(outside, 'upload');
    await mkdir(src);
    await writeFile(join(src, 'input.txt'), 'legitimate input\n');
    for (const job of [CREATED, CANCELLED]) {
      const up = await runCli('rsync', ['-rtE', '--partial', '-e', rsh, `${src}/`, 'h:x'], { env: { ...process.env, MGW_VERB: 'put', MGW_JOB: job } });
      expect(up.code, up.stderr).toBe(0);
    }
    expect((await gw.run(`mint-gw cancel ${CANCELLED}`)).exitCode).toBe(0);
    expect((await gw.run(`mint-gw start ${LIVE} ${LIVE_ARG}`)).exitCode).toBe(0);
    expect((await gw.run(`mint-gw start ${RUNNING} sleep 300`)).exitCode).toBe(0);
    await waitForState(LIVE, /^state=exited$/m);
  }, 180_000);
  afterAll(async () => {
    gw?.close();
    await rm(outside, { recursive: true, force: true });
  });

  describe('1. shell and subsystem requests', () => {
    /** Runs one request and checks how many audit lines it added. */
    const audited = async <T>(expectedLines: number, work: () => Promise<T>): Promise<T> => {
      const n = await auditSize();
      const result = await work();
      expect(await auditSize()).toBe(n + expectedLines);
      return result;
    };

    it('shell request (ssh2, no pty) -> 65', async () => {
      expectRefused(await audited(1, () => gw.shell()), 'E_NOCOMMAND', MSG_NOCOMMAND);
    });
    it('empty exec command -> 65', async () => {
      expectRefused(await audited(1, () => gw.run('')), 'E_NOCOMMAND', MSG_NOCOMMAND);
    });
    it('OpenSSH shell request (ssh -T, no command) -> 65', async () => {
      const r = await audited(1, () => sshCli(sandbox(), ['-T', `${sandbox().user}@127.0.0.1`]));
      tally.add('E_NOCOMMAND');
      expect({ code: r.code, stderr: gatewayStderr(r.stderr), stdout: r.stdout }).toEqual({ code: 65, stderr: refusalLine('E_NOCOMMAND', MSG_NOCOMMAND), stdout: '' });
    });
    it('shell with a forced pty (ssh -tt) is stopped by restrict before the gateway', async () => {
      const r = await audited(0, () => sshCli(sandbox(), ['-tt', `${sandbox().user}@127.0.0.1`]));
      expect(r.code).toBe(255);
      expect(r.stderr).toContain('PTY allocation request failed');
    });
    it('shell with a pty (ssh2): restrict refuses the pty; the shell request after it is refused and audited even though the client has gone', async () => {
      const c = await connect(await resolveHost(sandbox().host));
      const n = await auditSize();
      try {
        await expect(new Promise((resolve, reject) => c.client.shell({}, (e, ch) => (e ? reject(e) : resolve(ch))))).rejects.toThrow(/pseudo-terminal/);
      } finally {
        c.close();
      }
      // ssh2 still sends `shell` after the refused pty, so the gateway runs without a command. The
      // client is gone by the time it answers: its refusal used to die of SIGPIPE on stderr before
      // its audit line (red-team finding); the line is now written first.
      for (const deadline = Date.now() + 5000; (await auditSize()) < n + 1; ) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(await auditSize()).toBe(n + 1);
      expect((await readAudit(sandbox().root)).at(-1)?.decision).toBe('refused:E_NOCOMMAND');
      tally.add('E_NOCOMMAND');
    });
    // sshd does not forward a subsystem's stderr, so the refusal shows as exit 66 and the audit line.
    it('subsystem sftp (ssh2) -> 66', async () => {
      const r = await audited(1, () => gw.subsystem('sftp'));
      tally.add('E_SUBSYSTEM');
      expect({ exit: r.exitCode, stderr: gatewayStderr(r.stderr), stdout: r.stdout.length }).toEqual({ exit: 66, stderr: '', stdout: 0 });
      expect((await readAudit(sandbox().root)).at(-1)?.decision).toBe('refused:E_SUBSYSTEM');
    });
    it('subsystem sftp (ssh -s sftp) -> 66', async () => {
      const r = await audited(1, () => sshCli(sandbox(), ['-s', `${sandbox().user}@127.0.0.1`, 'sftp']));
      tally.add('E_SUBSYSTEM');
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 66, stdout: '' });
    });
    it('unknown subsystem (ssh -s foo) is refused by sshd before the gateway', async () => {
      const r = await audited(0, () => sshCli(sandbox(), ['-s', `${sandbox().user}@127.0.0.1`, 'foo']));
      expect(r.code).toBe(255);
      expect(r.stderr).toContain('subsystem request failed');
    });
    it('real sftp client uploading a file -> refused (66), nothing written', async () => {
      const local = join(outside, 'sftp-src.txt');
      await writeFile(local, 'x\n');
      const r = await audited(1, () =>
        runCli('sftp', [...sshOptions(sandbox()), '-P', String(sandbox().port), '-b', '-', `${sandbox().user}@127.0.0.1`], {
          input: `put ${local} ${pwnedRel('sftp')}\nput ${local} ${pwned('sftp')}\n`,
        }),
      );
      tally.add('E_SUBSYSTEM');
      expect(r.code).toBe(255);
      expect(r.stderr).toContain('Connection closed');
      expect((await readAudit(sandbox().root)).at(-1)?.decision).toBe('refused:E_SUBSYSTEM');
    });
    it('real scp client (SFTP protocol) uploading -> refused (66)', async () => {
      const r = await audited(1, () =>
        runCli('scp', [...sshOptions(sandbox()), '-P', String(sandbox().port), programPath, `${sandbox().user}@127.0.0.1:${pwned('scp')}`]),
      );
      tally.add('E_SUBSYSTEM');
      expect(r.code).toBe(255);
      expect((await readAudit(sandbox().root)).at(-1)?.decision).toBe('refused:E_SUBSYSTEM');
    });
    it('real scp -O (legacy scp protocol) uploading -> 66', async () => {
      const r = await audited(1, () =>
        runCli('scp', ['-O', ...sshOptions(sandbox()), '-P', String(sandbox().port), programPath, `${sandbox().user}@127.0.0.1:${pwned('scpO')}`]),
      );
      tally.add('E_SUBSYSTEM');
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(refusalLine('E_SUBSYSTEM', MSG_SUBSYSTEM));
    });
    it('real scp -O downloading /etc/passwd -> 66, nothing received', async () => {
      const dest = join(outside, 'scp-got');
      const r = await audited(1, () =>
        runCli('scp', ['-O', ...sshOptions(sandbox()), '-P', String(sandbox().port), `${sandbox().user}@127.0.0.1:/etc/passwd`, dest]),
      );
      tally.add('E_SUBSYSTEM');
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(refusalLine('E_SUBSYSTEM', MSG_SUBSYSTEM));
      expect(existsSync(dest)).toBe(false);
    });
    it.each([
      ['internal-sftp', 'internal-sftp'],
      ['sftp-server by path', '/usr/lib/openssh/sftp-server'],
      ['scp sink', 'scp -t .'],
      ['scp source', 'scp -f /etc/passwd'],
      ['scp by path', '/usr/bin/scp -t /tmp'],
      ['sftp-server by path with arguments', '/usr/lib/openssh/sftp-server -e'],
    ])('exec %s -> 66', async (_name, command) => {
      expectRefused(await audited(1, () => gw.run(command)), 'E_SUBSYSTEM', MSG_SUBSYSTEM);
    });
    it('a NUL byte in the command is refused by sshd before the gateway', async () => {
      const c = await connect(await resolveHost(sandbox().host));
      try {
        await audited(0, async () => {
          const outcome = await execCollect(c, `mint-gw probe\0;touch ${pwned('nul')}`).then(
            (r) => `exit ${r.exitCode}`,
            (e: Error) => `error ${e.message}`,
          );
          expect(outcome).toMatch(/^error .*Unable to exec/);
        });
      } finally {
        c.close();
      }
    });
  });

  describe('2. injection appended to a valid command of every verb -> 64', () => {
    it.concurrent.for(injectionRows)('$name', async (r, { expect: ex }) => {
      expectRefused(await gw.run(r.command), r.code, r.message, ex);
    });
  });

  describe('3. malformed tokens -> 64', () => {
    it.concurrent.for(tokenRows)('$name', async (r, { expect: ex }) => {
      expectRefused(await gw.run(r.command), r.code, r.message, ex);
    });
  });

  describe('4. verbs, first words, argument counts, spacing, length -> 64', () => {
    it.concurrent.for(shapeRows)('$name', async (r, { expect: ex }) => {
      expectRefused(await gw.run(r.command), r.code, r.message, ex);
    });
    it('SSH_ORIGINAL_COMMAND and LD_PRELOAD sent as env requests do not override the exec command', async () => {
      const r = await gw.run('id', { env: { SSH_ORIGINAL_COMMAND: 'mint-gw probe', LD_PRELOAD: pwned('preload.so'), PATH: '/tmp' } });
      expectRefused(r, 'E_USAGE', unknownCommand('id'));
    });
  });

  describe('4b. audit line of a hostile verb', () => {
    it('an unknown verb stays one field: it cannot add or forge decision= / job= fields', async () => {
      const verb = `decision=accepted:${TOKEN}`;
      const before = (await readAudit(sandbox().root)).length;
      expectRefused(await gw.run(`mint-gw ${verb} job=${LIVE}`), 'E_USAGE', unknownVerb(verb));
      // An unknown verb is logged as `?`: the client's token (up to 4 KiB) never reaches the log.
      const all = await readAudit(sandbox().root);
      expect(all.some((l) => l.raw.includes(TOKEN))).toBe(false);
      const mine = all.slice(before).filter((l) => / verb=\? job=- /.test(l.raw));
      expect(mine).toHaveLength(1);
      const line = mine[0];
      const keys = line?.raw.split(' ').map((field) => field.split('=')[0]);
      expect(keys).toEqual([expect.stringMatching(/^\d{4}-\d\d-\d\dT/), 'prev', 'key', 'from', 'req', 'verb', 'job', 'decision', 'exit']);
      expect(line?.decision).toBe('refused:E_USAGE');
    });
  });

  describe('5. state abuse', () => {
    const started = (job: string): string => `job ${job} has started; its inputs can no longer change`;

    it('put after start -> 68', async () => {
      expectRefused(await gw.run(`mint-gw put ${LIVE} ${CAPS}`), 'E_STATE', started(LIVE));
    });
    it('put after a cancel before start -> 68', async () => {
      expectRefused(await gw.run(`mint-gw put ${CANCELLED} ${CAPS}`), 'E_STATE', started(CANCELLED));
    });
    it('put while running -> 68', async () => {
      expectRefused(await gw.run(`mint-gw put ${RUNNING} ${CAPS}`), 'E_STATE', started(RUNNING));
    });
    it('logs of a job that never started -> 68', async () => {
      expectRefused(await gw.run(`mint-gw logs ${CREATED} 0`), 'E_STATE', `job ${CREATED} has not started`);
    });
    it('get while running -> 68', async () => {
      expectRefused(await gw.run(`mint-gw get ${RUNNING} ${CAPS}`), 'E_STATE', `job ${RUNNING} is still running`);
    });
    it('take while running -> 68, job dir kept', async () => {
      expectRefused(await gw.run(`mint-gw take ${RUNNING} ${CAPS}`), 'E_STATE', `job ${RUNNING} is still running`);
      expect(existsSync(join(sandbox().root, RUNNING, RUNNING))).toBe(true);
    });
    it('take of a missing job -> 67, creates nothing', async () => {
      expectRefused(await gw.run(`mint-gw take ${MISSING} ${CAPS}`), 'E_NOJOB', `no job ${MISSING}`);
      expect(existsSync(join(sandbox().root, MISSING))).toBe(false);
    });
    it('take without an rsync client on the other end sends nothing and removes nothing', async () => {
      // No rsync protocol on stdin: the sender fails, so the job must stay.
      const r = await gw.run(`mint-gw take ${LIVE} ${CAPS}`);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).not.toContain('mint-gw: removed');
      expect(existsSync(join(sandbox().root, LIVE, LIVE))).toBe(true);
    });
    it('rm while running -> 68, job dir kept', async () => {
      expectRefused(await gw.run(`mint-gw rm ${RUNNING}`), 'E_STATE', `job ${RUNNING} is running; cancel it first`);
      expect(existsSync(join(sandbox().root, RUNNING, RUNNING))).toBe(true);
    });
    it.each(['status', 'cancel'])('%s of a missing job -> 67', async (verb) => {
      expectRefused(await gw.run(`mint-gw ${verb} ${MISSING}`), 'E_NOJOB', `no job ${MISSING}`);
    });
    it('get of a missing job -> 67', async () => {
      expectRefused(await gw.run(`mint-gw get ${MISSING} ${CAPS}`), 'E_NOJOB', `no job ${MISSING}`);
    });
    it('logs of a missing job -> 67', async () => {
      expectRefused(await gw.run(`mint-gw logs ${MISSING} 0`), 'E_NOJOB', `no job ${MISSING}`);
    });
    it('rm of a missing job succeeds silently and creates nothing (the gateway treats it as done)', async () => {
      const r = await gw.run(`mint-gw rm ${MISSING}`);
      expect({ exit: r.exitCode, stderr: gatewayStderr(r.stderr), stdout: r.stdout.toString() }).toEqual({ exit: 0, stderr: '', stdout: '' });
      expect(existsSync(join(sandbox().root, MISSING))).toBe(false);
      const rms = (await readAudit(sandbox().root)).filter((l) => l.raw.includes(`verb=rm job=${MISSING} `));
      expect(rms.map((l) => l.decision || `${l.outcome} exit=${l.exit}`)).toEqual(['accepted', 'ok exit=0']);
      expect(rms[1]?.req).toBe(rms[0]?.req);
    });
    it('start run twice, then four more at once, runs the program exactly once', async () => {
      const first = await gw.run(`mint-gw start ${COUNTED} count`);
      expect(first.exitCode).toBe(0);
      expect(first.stdout.toString()).toMatch(/^state=running$/m);
      const again = await gw.run(`mint-gw start ${COUNTED} count`);
      expect(again.exitCode).toBe(0);
      expect(again.stdout.toString()).toMatch(new RegExp(`^job=${COUNTED}$`, 'm'));
      const burst = await Promise.all(Array.from({ length: 4 }, () => gw.run(`mint-gw start ${COUNTED} count`)));
      expect(burst.map((r) => r.exitCode)).toEqual([0, 0, 0, 0]);
      await waitForState(COUNTED, /^state=exited$/m);
      // Other arguments under the same id are another job: refused, never the old one's state.
      const late = await gw.run(`mint-gw start ${COUNTED} count other-args`);
      expectRefused(late, 'E_STATE', `job ${COUNTED} was started with another program or other arguments; a job id names one job (attach resumes it, a new id runs anew)`);
      expect(await readFile(counter, 'utf8')).toBe(`ran ${COUNTED}\n`);
      const audit = await readAudit(sandbox().root);
      const mine = audit.filter((l) => l.raw.includes(`verb=start job=${COUNTED} decision=`));
      expect(mine.map((l) => l.decision)).toEqual(['accepted', ...Array(5).fill('already-started'), 'refused:E_STATE']);
    });
    it('run of a job that already ran follows its log and does not run it again', async () => {
      const r = await gw.run(`mint-gw run ${COUNTED} count`);
      expect(r.exitCode).toBe(0);
      expect(r.stdout.toString()).toBe('args: count\n');
      expect(gatewayStderr(r.stderr)).toBe(`mint-gw: started: job=${COUNTED} state=exited pid=-\nmint-gw: status: job=${COUNTED} state=exited exit=0\n`);
      expect(await readFile(counter, 'utf8')).toBe(`ran ${COUNTED}\n`);
      expect((await readAudit(sandbox().root)).filter((l) => l.raw.includes(`verb=run job=${COUNTED} decision=`)).map((l) => l.decision)).toEqual(['already-started']);
    });
    it('run of a job cancelled before it started does not run the program -> 68 (no log)', async () => {
      const r = await gw.run(`mint-gw run ${CANCELLED} count`);
      tally.add('E_STATE');
      expect({ exit: r.exitCode, stdout: r.stdout.toString(), stderr: gatewayStderr(r.stderr) }).toEqual({
        exit: 68,
        stdout: '',
        stderr: `mint-gw: started: job=${CANCELLED} state=cancelled pid=-\n${refusalLine('E_STATE', `job ${CANCELLED} has no log`)}`,
      });
      expect(await readFile(counter, 'utf8')).toBe(`ran ${COUNTED}\n`);
      expect(existsSync(join(sandbox().root, CANCELLED, 'remote_program_exec.log'))).toBe(false);
    });
    it('start of a job cancelled before it started does not run the program', async () => {
      const r = await gw.run(`mint-gw start ${CANCELLED} count`);
      expect(r.exitCode).toBe(0);
      expect(gatewayStderr(r.stderr)).toBe('');
      expect(await readFile(counter, 'utf8')).toBe(`ran ${COUNTED}\n`);
      expect(existsSync(join(sandbox().root, CANCELLED, 'remote_program_exec.log'))).toBe(false);
      expect((await readAudit(sandbox().root)).filter((l) => l.raw.includes(`verb=start job=${CANCELLED} decision=`)).map((l) => l.decision)).toEqual(['already-started']);
    });
  });

  describe('weaknesses this suite found, fixed in the gateway', () => {
    // W1: the UUID check used `?` for the hex positions, and `?` also matches '-'.
    it('a 36-dash job id is refused as not a UUID', async () => {
      const r = await gw.run(`mint-gw status ${'-'.repeat(36)}`);
      tallyObserved(r);
      expect({ exit: r.exitCode, stderr: gatewayStderr(r.stderr) }).toEqual({ exit: 64, stderr: refusalLine('E_USAGE', MSG_JOB) });
    });
    it('a job id with dashes in hex positions is refused', async () => {
      const r = await gw.run(`mint-gw status a-------${'-0000'.repeat(3)}-${'-'.repeat(12)}`);
      tallyObserved(r);
      expect({ exit: r.exitCode, stderr: gatewayStderr(r.stderr) }).toEqual({ exit: 64, stderr: refusalLine('E_USAGE', MSG_JOB) });
    });
    // W2: `$((MGW_OFFSET + 1))` reads a leading 0 as octal: 08 aborted the shell, 010 meant 8.
    it('log offset 08 is refused or read as decimal (it used to abort dash with exit 2)', async () => {
      const r = await gw.run(`mint-gw logs ${LIVE} 08`);
      tallyObserved(r);
      const decimal = r.exitCode === 0 && r.stdout.toString() === LIVE_LOG.slice(8);
      const refused = r.exitCode === 64 && gatewayStderr(r.stderr) === refusalLine('E_USAGE', MSG_OFFSET);
      expect(decimal || refused, `exit ${r.exitCode}, stderr ${JSON.stringify(r.stderr)}`).toBe(true);
    });
    it('log offset 010 is refused or read as decimal 10 (it used to be octal 8)', async () => {
      const r = await gw.run(`mint-gw logs ${LIVE} 010`);
      tallyObserved(r);
      const decimal = r.exitCode === 0 && r.stdout.toString() === LIVE_LOG.slice(10);
      const refused = r.exitCode === 64 && gatewayStderr(r.stderr) === refusalLine('E_USAGE', MSG_OFFSET);
      expect(decimal || refused, `exit ${r.exitCode}, stdout ${JSON.stringify(r.stdout.toString())}`).toBe(true);
    });

    // W4: cancel before start writes started/ and `cancelled` but no pid and no exit; mgw_job_state
    // said `running` for 10 s (rm and get refused, --max-jobs counted it) and `lost` after that.
    it('a job cancelled before it started reports state=cancelled (it used to say running, then lost)', async () => {
      const r = await gw.run(`mint-gw status ${CANCELLED}`);
      expect(r.exitCode).toBe(0);
      expect(r.stdout.toString()).toMatch(/^state=cancelled$/m);
    });
  });

  describe('6. confinement after every hostile case', () => {
    it('nothing outside jobs/ changed (sshd.log aside)', async () => {
      expect(diffTrees(before, await snapshotTree(sandbox().dir, outsideJobs))).toEqual([]);
    });
    it('jobs/ holds only the jobs legitimate steps made, and the audit log', async () => {
      const entries = (await readdir(sandbox().root)).sort();
      expect(entries).toEqual([...LEGIT_JOBS, '.mint-gateway.lock', '.mint-gateway-audit.log'].sort());
      const allowed = new Set(['remote_program_exec.log', 'started', 'pid', 'request', 'exit', 'cancelled']);
      for (const job of LEGIT_JOBS) {
        // The program's cwd is named by the job (MInt's programs derive their names from it).
        for (const name of await readdir(join(sandbox().root, job))) expect(new Set([...allowed, job]), `${job}/${name}`).toContain(name);
      }
      // Only the legitimate upload is in the uploaded jobs' work dirs; the program writes nothing there.
      expect((await readdir(join(sandbox().root, CREATED, CREATED))).sort()).toEqual(['input.txt']);
      expect(await readdir(join(sandbox().root, LIVE, LIVE))).toEqual([]);
    });
    it('no canary exists anywhere an injected command could have written it', async () => {
      const places = [
        '/tmp',
        homedir(),
        sandbox().dir,
        sandbox().root,
        outside,
        ...LEGIT_JOBS.map((j) => join(sandbox().root, j, j)),
      ];
      for (const dir of places) {
        const hits = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.includes(CANARY));
        expect(hits, dir).toEqual([]);
      }
      const tree = await snapshotTree(sandbox().dir);
      expect([...tree.keys()].filter((p) => p.includes('mint-pwned'))).toEqual([]);
    });
    it('the audit log has one refused line per refusal that reached the gateway', async () => {
      const audit = await readAudit(sandbox().root);
      expect(countRefusals(audit)).toEqual(tally.get());
      expect(tally.total()).toBeGreaterThanOrEqual(170);
      for (const line of audit) expect(line.decision || line.outcome).toMatch(/^(accepted|already-started|refused:E_[A-Z]+|ok|failed|cancelled|error:E_[A-Z]+|signal:[A-Z0-9+-]+)$/);
      for (const line of audit) {
        const code = /^(?:refused|error):(E_[A-Z]+)$/.exec(line.decision || line.outcome)?.[1];
        if (code) expect(line.exit).toBe(EXIT[code as ErrorName]);
      }
    });
  });
});

// Row counts for the report (and a guard that nobody shrinks the tables by accident).
describe('hostile tables', () => {
  it('have distinct inputs and the expected size', () => {
    const all = [...injectionRows, ...tokenRows, ...shapeRows];
    const keys = all.map((r) => (typeof r.command === 'string' ? r.command : r.command.toString('latin1')));
    expect(new Set(keys).size).toBe(keys.length);
    expect(injectionRows.length).toBe(PAYLOADS.length);
    for (const [verb] of VALID) expect(injectionRows.filter((r) => r.name.startsWith(`${verb} + `)).length).toBeGreaterThanOrEqual(3);
    expect(all.length).toBeGreaterThanOrEqual(150);
  });
});
