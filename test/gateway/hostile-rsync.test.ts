/**
 * Gateway hardening, rsync level: what a hostile client can do through an ACCEPTED `mint-gw put JOB
 * CAPS` (the gateway runs rsync's receiver from its own fixed template: -tEr, --munge-links,
 * --partial, --confine-root=WORK when the local rsync has it) / `mint-gw get JOB` (rsync's daemon
 * mode on a per-request module: the job's staging tree, use chroot = no, read only, munged links,
 * refused options).
 *
 * The REAL local rsync client is used with an --rsh wrapper (test/support/hostile-helpers.ts) that
 * ignores rsync's remote command and runs `mint-gw put|get JOB CAPS` through OpenSSH instead, so the
 * client asks for dangerous things while the server runs the gateway's template. Each case records the
 * rsync exit status it observed (pinned in the row), asserts the exact outcome in the job's work dir
 * (or the download dir), and asserts that nothing else in the sandbox changed:
 *   upload:   -l symlinks to /etc/passwd and ../../, -D with a fifo (and a device when root), --delete,
 *             --files-from with ../, --partial-dir=../x, --backup-dir=../x, --temp-dir=/tmp,
 *             --link-dest=/etc, -R with an absolute path, include/exclude and -F filter rules, a
 *             255-byte name, names that are shell syntax or options, setuid/world-writable modes,
 *             and wire-format options the server does not share (-o -g, -X, -A, -s, -z).
 *   download: (rsync's daemon mode, `mint-gw get JOB`, the client naming h::work/; every row with
 *             this machine's rsync, with it behind a wrapper that hides --confine-root, and with
 *             /opt/rsync-3.1.3 and /opt/rsync-3.2.3 when installed) a work dir whose program left
 *             symlinks to /etc/hostname, to a secret outside the sandbox and to ../../, which the
 *             server sends as symlinks and never follows; fetched without -l, with -D, -z, include
 *             rules, a path above the module; -L, -k, --copy-unsafe-links, --files-from (local and
 *             remote), --remove-source-files, --no-munge-links (refused by the module); and the
 *             dir-merge exfiltration (a client-named merge file in an ancestor of the work dir, or
 *             reached through the program's symlinks, read by the server as rules, so the client
 *             learns its lines from which of its names go missing or from the echoed parse error),
 *             which rsync's daemon-mode path sanitizing and the munged staging tree stop.
 *   removal:  `mint-gw rm` of that job must not follow its symlinks (chmod -R, rm -rf).
 * Some of these "succeed" harmlessly (client-side-only options): the row then asserts that harmless
 * result precisely, e.g. the server ignores --partial-dir and leaves no ../x behind.
 *
 * NOT covered: a hand-written rsync protocol stream (only the real client is used here; a raw `!`
 * clear-list rule and one-off merge rules are sent by hand in export-escape.test.ts; rsync's receiver
 * checks such as "unsafe pathname" and "unrequested file-list name" are relied upon, not fuzzed),
 * --export filtering, paths longer than PATH_MAX (the client cannot name them and
 * the sandbox's cleanup could not remove them), size/disk limits, and the gateway's argv checks
 * (hostile.test.ts). Desync failures depend on rsync's wire format: the exit statuses pinned here are
 * those of the rsync in global setup's banner (3.5.0, protocol 32), with file times pinned so the
 * stream is the same on every run.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, lstat, lutimes, mkdir, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDir, useSandbox } from '../support/fixture.js';
import {
  diffTrees,
  gatewayRsync,
  GATEWAY_RSYNCS,
  openGateway,
  readAudit,
  runCli,
  snapshotTree,
  writeRshWrapper,
  type CliResult,
  type GatewaySession,
} from '../support/hostile-helpers.js';

const TOKEN = randomBytes(8).toString('hex');
const CANARY = `mint-pwned-${TOKEN}`;
// A fixed time with a fraction, so every file list is byte-identical from run to run.
const PINNED = 1577836800.5;

const PROGRAM = (secret: string): string => `#!/bin/sh
# Program for the hostile rsync suite: \`leak\` leaves symlinks that point out of the work dir.
case "\${1:-}" in
  leak)
    ln -s /etc/hostname leak
    ln -s '${secret}' secret
    ln -s ../../ up
    echo inside >inside.txt
    touch -h -d @${PINNED} leak secret up inside.txt . ;;
esac
exit 0
`;

/** `type path [size mode | -> target]`, sorted: the whole tree in one comparable list. */
async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(dir, r));
      if (st.isSymbolicLink()) out.push(`l ${r} -> ${await readlink(join(dir, r))}`);
      else if (st.isDirectory()) {
        out.push(`d ${r}`);
        await walk(r);
      } else if (st.isFile()) out.push(`f ${r} ${st.size} ${(st.mode & 0o7777).toString(8)}`);
      else out.push(`? ${r}`);
    }
  };
  await walk('');
  return out.sort();
}

/** Every regular file's content under dir, concatenated (to look for leaked bytes). */
async function allContent(dir: string): Promise<string> {
  let text = '';
  for (const entry of await listTree(dir)) {
    if (entry.startsWith('f ')) text += await readFile(join(dir, entry.split(' ')[1]!), 'utf8');
  }
  return text;
}

async function pinTimes(dir: string): Promise<void> {
  for (const entry of await listTree(dir)) await lutimes(join(dir, entry.split(' ')[1]!), PINNED, PINNED);
  await lutimes(dir, PINNED, PINNED);
}

/** Whether rsync's exit status is the pinned one (or one of the pinned ones). */
function pinned(expected: number | readonly number[], actual: number | null): boolean | string {
  const ok = typeof expected === 'number' ? actual === expected : actual !== null && expected.includes(actual);
  return ok || `exit ${actual}, expected ${JSON.stringify(expected)}`;
}

interface RsyncRun {
  result: CliResult;
  /** What rsync asked its remote shell to run (and the wrapper ignored). */
  asked: string;
}

// Generous: each rsync run opens its own OpenSSH session, and a loaded machine can stall one for seconds.
describe('gateway hardening: hostile rsync clients through put and get', { timeout: 240_000 }, async () => {
  const outside = await freshDir(); // sources, download dirs, secrets: never inside the sandbox
  const secret = join(outside, 'secret.txt');
  await writeFile(secret, `${TOKEN}\n`);
  await chmod(secret, 0o400); // rm's `chmod -R u+rwx` must not reach it through the job's symlink
  const programPath = join(outside, 'prog.sh');
  await writeFile(programPath, PROGRAM(secret));
  await chmod(programPath, 0o755);
  const sandbox = useSandbox({ program: programPath });
  const hostname = (await readFile('/etc/hostname', 'utf8')).trim();

  let rsh: string;
  let gw: GatewaySession;
  const LEAK = randomUUID(); // its program left leak -> /etc/hostname, secret -> SECRET, up -> ../../
  let caseNo = 0;
  const jobs: string[] = []; // every job a case uploaded to; nothing else may appear under jobs/

  // The exfiltration oracle: a file outside the job whose lines name files in the work dir. rsync
  // looks a dir-merge file up in the transfer dir's ANCESTORS (or the dirs below them), so the secret
  // sits in one: the sandbox dir, as ~/.netrc would sit above a job root in the home dir. It is
  // written before any snapshot is taken.
  const secretNames = (): string => join(sandbox().dir, 'secret-names');

  beforeAll(async () => {
    await writeFile(secretNames(), 'inside.txt\n', { mode: 0o600 });
    rsh = await writeRshWrapper(sandbox(), outside);
    gw = await openGateway(sandbox(), 2);
    expect((await gw.run(`mint-gw start ${LEAK} leak`)).exitCode).toBe(0);
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
      if (/^state=exited$/m.test((await gw.run(`mint-gw status ${LEAK}`)).stdout.toString())) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await listTree(join(sandbox().root, LEAK, LEAK))).toEqual([
      // The program runs with the account's umask (sshd's, here this test process's), not the gateway's 077.
      `f inside.txt 7 ${(0o666 & ~process.umask()).toString(8)}`,
      'l leak -> /etc/hostname',
      `l secret -> ${secret}`,
      'l up -> ../../',
    ]);
  }, 120_000);
  afterAll(async () => {
    gw?.close();
    await rm(outside, { recursive: true, force: true });
  });

  const rsync = async (verb: 'put' | 'get', job: string, args: string[], cwd = outside): Promise<RsyncRun> => {
    const argvLog = join(outside, `argv-${++caseNo}.log`);
    const result = await runCli('rsync', ['-e', rsh, ...args], {
      cwd,
      env: { ...process.env, MGW_VERB: verb, MGW_JOB: job, MGW_ARGV_LOG: argvLog },
    });
    const asked = await readFile(argvLog, 'utf8').catch(() => '');
    return { result, asked };
  };

  const ignoreLogs = (rel: string): boolean => rel === 'sshd.log' || rel === 'jobs/.mint-gateway-audit.log';
  /** Per-case snapshots leave out the logs and the other cases' jobs (checked once, at the end). */
  const ignoreOthers = (current: string) => (rel: string): boolean => {
    if (ignoreLogs(rel)) return true;
    const m = /^jobs\/([0-9a-f-]{36})(\/|$)/.exec(rel);
    return m !== null && m[1] !== current && m[1] !== LEAK;
  };

  /** A fresh source dir under `outside`, filled by `fill`. */
  const source = async (fill: (dir: string) => Promise<void>): Promise<string> => {
    const dir = join(outside, `src-${++caseNo}`);
    await mkdir(dir);
    await fill(dir);
    return dir;
  };

  interface Upload {
    /** Files the job already holds from a legitimate upload first. */
    before?: Record<string, string>;
    fill: (src: string) => Promise<void>;
    args: (src: string) => string[];
    /** Pinned exit status of the rsync client (a list when two ends fail at once and either may report first). */
    code: number | readonly number[];
    /** The work dir afterwards, as listTree prints it. */
    work: string[] | ((src: string) => string[]);
    /** Something the client must have asked rsync's server for (proving the gateway ignored it). */
    asked?: RegExp;
    stderr?: RegExp;
    extra?: (ctx: { job: string; src: string; run: RsyncRun }) => Promise<void>;
  }

  const upload = async (u: Upload): Promise<void> => {
    const job = randomUUID();
    jobs.push(job);
    if (u.before) {
      const pre = await source(async (d) => {
        for (const [name, text] of Object.entries(u.before!)) await writeFile(join(d, name), text);
      });
      expect((await rsync('put', job, ['-rt', `${pre}/`, 'h:x'])).result.code).toBe(0);
    }
    const jobRel = `jobs/${job}`;
    const skip = (rel: string): boolean => ignoreOthers(job)(rel) || rel === `${jobRel}/${job}` || rel.startsWith(`${jobRel}/${job}/`);
    // jobs/ gains the job dir on the first put, and the job dir's mtime moves with the gateway's
    // putting.PID marker, so only their types are compared.
    const typeOnly = (rel: string): boolean => rel === 'jobs' || rel === jobRel;
    const beforeTree = await snapshotTree(sandbox().dir, skip, typeOnly);
    const src = await source(u.fill);
    const run = await rsync('put', job, u.args(src));
    // The client's rsync may exit (on an error) before the gateway has: the gateway announces an
    // upload with putting.PID while it runs and removes it when it ends, so wait for that first.
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      const entries = await readdir(join(sandbox().root, job)).catch(() => []);
      if (!entries.some((e) => e.startsWith('putting.'))) break;
    }
    const changes = diffTrees(beforeTree, await snapshotTree(sandbox().dir, skip, typeOnly));
    const work = join(sandbox().root, job, job);
    expect({
      code: pinned(u.code, run.result.code),
      timedOut: run.result.timedOut,
      // Outside the work dir only the job dir itself may appear, holding nothing but work/.
      changes: changes.filter((c) => c !== `created ${jobRel} (dir)`),
      jobDir: await readdir(join(sandbox().root, job)),
      work: await listTree(work),
    }).toEqual({
      code: true,
      timedOut: false,
      changes: [],
      jobDir: [job],
      work: typeof u.work === 'function' ? u.work(src) : u.work,
    });
    if (u.asked) expect(run.asked).toMatch(u.asked);
    // rsync prints warnings such as "skipping non-regular file" on stdout, errors on stderr.
    if (u.stderr) expect(run.result.stdout + run.result.stderr).toMatch(u.stderr);
    // The gateway accepted exactly this put, with its own template.
    expect((await readAudit(sandbox().root)).filter((l) => l.raw.includes(`verb=put job=${job} decision=`)).map((l) => l.decision)).toEqual(
      u.before ? ['accepted', 'accepted'] : ['accepted'],
    );
    await u.extra?.({ job, src, run });
  };

  const twoFiles = async (d: string): Promise<void> => {
    await writeFile(join(d, 'a.txt'), 'aa\n');
    await mkdir(join(d, 'sub'));
    await writeFile(join(d, 'sub', 'b.txt'), 'b\n');
  };
  const TWO_FILES = ['d sub', 'f a.txt 3 600', 'f sub/b.txt 2 600'];

  describe('upload (mint-gw put)', () => {
    it('control: the client flags MInt uses (-rtE --partial) upload plainly -> 0', async () => {
      await upload({ fill: twoFiles, args: (s) => ['-rtE', '--partial', `${s}/`, 'h:x'], code: 0, work: TWO_FILES });
    });

    it('-l with symlinks to /etc/passwd and ../../: the receiver (no -l) aborts on the desynced list -> 4, no symlink', async () => {
      await upload({
        fill: async (d) => {
          await writeFile(join(d, 'a.txt'), 'aa\n');
          await symlink('/etc/passwd', join(d, 'pw'));
          await symlink('../../', join(d, 'up'));
          await pinTimes(d);
        },
        args: (s) => ['-rtl', `${s}/`, 'h:x'],
        code: 4,
        work: [],
        asked: /--server -ltre\.[A-Za-z]+ /,
        stderr: /unsafe pathname from sender/,
      });
    });

    it('-D with a fifo: the fifo is skipped, regular files arrive -> 0', async () => {
      await upload({
        fill: async (d) => {
          await twoFiles(d);
          execFileSync('mkfifo', [join(d, 'fifo')]);
        },
        args: (s) => ['-rtD', `${s}/`, 'h:x'],
        code: 0,
        work: TWO_FILES,
        asked: /--server -Dtre\./,
        stderr: /skipping non-regular file "fifo"/,
      });
    });

    // Creating a device node needs root; as another user this row is not generated.
    if (process.getuid?.() === 0) {
      it('-D with a character device (root): the server cannot parse its rdev -> 2, nothing created', async () => {
        await upload({
          fill: async (d) => {
            await writeFile(join(d, 'a.txt'), 'aa\n');
            execFileSync('mknod', [join(d, 'null'), 'c', '1', '3']);
            await pinTimes(d);
          },
          args: (s) => ['-rtD', `${s}/`, 'h:x'],
          code: 2,
          work: [],
          stderr: /invalid file mode/,
        });
      });
    }

    it('--delete against a job that already holds keep.txt: the server never deletes -> 2, keep.txt intact', async () => {
      await upload({
        before: { 'keep.txt': 'keep me\n' },
        fill: async (d) => writeFile(join(d, 'a.txt'), 'aa\n'),
        args: (s) => ['-rt', '--delete', `${s}/`, 'h:x'],
        code: 2,
        work: ['f keep.txt 8 600'],
        asked: / --delete /,
        extra: async ({ job }) => expect(await readFile(join(sandbox().root, job, job, 'keep.txt'), 'utf8')).toBe('keep me\n'),
      });
    });

    it('--files-from naming ../outside.txt: the client strips the ../, the file is not found -> 23, only a.txt', async () => {
      await writeFile(join(outside, 'outside.txt'), 'outside\n');
      const list = join(outside, 'files-from.txt');
      await writeFile(list, 'a.txt\n../outside.txt\n');
      await upload({
        fill: twoFiles,
        args: (s) => ['-rt', `--files-from=${list}`, `${s}/`, 'h:x'],
        code: 23,
        work: ['f a.txt 3 600'],
      });
    });

    it('--partial-dir=../x is never sent to the server -> 0, no ../x', async () => {
      await upload({ fill: twoFiles, args: (s) => ['-rt', '--partial-dir=../x', `${s}/`, 'h:x'], code: 0, work: TWO_FILES });
    });

    it('--backup --backup-dir=../x over an existing file: no backup anywhere, the file is replaced -> 0', async () => {
      await upload({
        before: { 'a.txt': 'old\n' },
        fill: async (d) => writeFile(join(d, 'a.txt'), 'new content\n'),
        args: (s) => ['-rt', '--backup', '--backup-dir=../x', `${s}/`, 'h:x'],
        code: 0,
        work: ['f a.txt 12 600'],
      });
    });

    it('--temp-dir=/tmp: the server writes its temp file in the work dir, nothing in /tmp -> 0', async () => {
      const name = `tempdir-probe-${TOKEN}.txt`;
      await upload({
        fill: async (d) => writeFile(join(d, name), 'x'.repeat(100_000)),
        args: (s) => ['-rt', '--temp-dir=/tmp', `${s}/`, 'h:x'],
        code: 0,
        work: [`f ${name} 100000 600`],
        extra: async () => expect((await readdir('/tmp')).filter((n) => n.includes(name))).toEqual([]),
      });
    });

    it('--link-dest=/etc with a file named passwd: no hard link into /etc, a fresh copy -> 0', async () => {
      await upload({
        fill: async (d) => writeFile(join(d, 'passwd'), 'not the real one\n'),
        args: (s) => ['-rt', '--link-dest=/etc', `${s}/`, 'h:x'],
        code: 0,
        work: ['f passwd 17 600'],
        extra: async ({ job }) => expect((await lstat(join(sandbox().root, job, job, 'passwd'))).nlink).toBe(1),
      });
    });

    it('--include/--exclude are applied by the client (sender) only -> 0, just a.txt', async () => {
      await upload({ fill: twoFiles, args: (s) => ['-rt', '--include=a.txt', '--exclude=*', `${s}/`, 'h:x'], code: 0, work: ['f a.txt 3 600'] });
    });

    it('-F with a .rsync-filter excluding secret.txt: client-side, the rule file itself goes up -> 0', async () => {
      await upload({
        fill: async (d) => {
          await writeFile(join(d, 'a.txt'), 'aa\n');
          await writeFile(join(d, 'secret.txt'), 'secret\n');
          await writeFile(join(d, '.rsync-filter'), '- secret.txt\n');
        },
        args: (s) => ['-rt', '-F', `${s}/`, 'h:x'],
        code: 0,
        work: ['f .rsync-filter 13 600', 'f a.txt 3 600'],
      });
    });

    it('a 255-byte file name lands inside the work dir -> 0', async () => {
      const name = 'n'.repeat(251) + '.txt';
      await upload({ fill: async (d) => writeFile(join(d, name), 'long\n'), args: (s) => ['-rt', `${s}/`, 'h:x'], code: 0, work: [`f ${name} 5 600`] });
    });

    it('file names that are shell syntax or rsync options are stored literally -> 0, no canary', async () => {
      const names = ['-e', '--delete', '--rsh=sh', '..x', ' ', 'a\nb', `$(touch ${CANARY})`, `;touch ${CANARY}`, '*', '`id`'];
      await upload({
        fill: async (d) => {
          for (const n of names) await writeFile(join(d, n), 'h\n');
        },
        args: (s) => ['-rt', `${s}/`, 'h:x'],
        code: 0,
        work: names.map((n) => `f ${n} 2 600`).sort(),
        extra: async () => {
          expect(existsSync(join('/tmp', CANARY))).toBe(false);
          expect(existsSync(join(process.env.HOME ?? '/root', CANARY))).toBe(false);
        },
      });
    });

    it('-p with setuid and world-writable modes, plus --chmod=u+s,g+s,o+w: the server keeps only the exec bit under umask 077 -> 0', async () => {
      await upload({
        fill: async (d) => {
          await writeFile(join(d, 'setuid'), 'x\n');
          await chmod(join(d, 'setuid'), 0o4755);
          await writeFile(join(d, 'open'), 'y\n');
          await chmod(join(d, 'open'), 0o666);
        },
        args: (s) => ['-rtp', '--chmod=u+s,g+s,o+w', `${s}/`, 'h:x'],
        code: 0,
        work: ['f open 2 600', 'f setuid 2 700'],
        asked: /--server -tpre\./,
      });
    });

    // The exit status and an untouched work dir are the outcome; the server's error text is not
    // asserted here, as it sometimes loses the race with the connection closing.
    it.each([
      ['-o -g (owner and group) -> 2', ['-og'], 2],
      ['-X (xattrs) -> 2', ['-X'], 2],
      ['-A (ACLs) -> 2', ['-A'], 2],
      ['-s (args over the protocol) -> 12', ['-s'], 12],
      // Both ends reject the compression negotiation; whichever error reaches the client first wins.
      ['-z (compression) -> 4 or 12', ['-z'], [4, 12]],
    ] as const)('%s: a wire format the fixed server does not share, nothing written', async (_name, flags, code) => {
      await upload({
        fill: async (d) => {
          await twoFiles(d);
          await pinTimes(d);
        },
        args: (s) => ['-rt', ...flags, `${s}/`, 'h:x'],
        code,
        work: [],
      });
    });

    it('-R with an absolute source path: the receiver refuses the absolute name -> 4, nothing written', async () => {
      await upload({
        fill: async (d) => writeFile(join(d, 'a.txt'), 'aa\n'),
        args: (s) => ['-rtR', `${s}/a.txt`, 'h:x'],
        code: 4,
        work: [],
        asked: /--server -trRe\./,
        // The receiver aborts at once, and its message can be lost with the connection (seen once in
        // a CI run); the exit status and the empty work dir are the proof, the message is a bonus.
        stderr: /ABORTING due to unsafe pathname from sender: \/tmp|^$/,
      });
    });
  });

  // Downloads run rsync's daemon mode (mint-gw get JOB; the client names h::work/): every row runs
  // against each rsync the gateway may have (GATEWAY_RSYNCS: this machine's, the same with
  // --confine-root hidden, which the gateway used to refuse (E_CONFIG) and now serves, and rsync
  // 3.1.3 / 3.2.3 when installed).
  describe.each(GATEWAY_RSYNCS)('download (mint-gw get, gateway rsync: %s) of a work dir holding symlinks out of the job', (_label, which) => {
    beforeAll(async () => {
      if (!which) return;
      const path = await gatewayRsync(which, outside);
      await sandbox().reinstall({ rsync: path });
      // sshd fixes the forced command when a connection authenticates: probe on a new one.
      const fresh = await openGateway(sandbox(), 1);
      try {
        const probe = (await fresh.run('mint-gw probe')).stdout.toString();
        expect(probe).toMatch(/^confine_root=no$/m);
        expect(probe).toMatch(/^rsync_downloads=yes$/m);
      } finally {
        fresh.close();
      }
    });
    afterAll(async () => {
      if (which) await sandbox().reinstall({});
    });

    interface Download {
      args: string[];
      code: number | readonly number[];
      files: string[];
      stderr?: RegExp;
    }
    const download = async (d: Download): Promise<void> => {
      const dest = join(outside, `dst-${++caseNo}`);
      await mkdir(dest);
      const skip = ignoreOthers(LEAK);
      const typeOnly = (rel: string): boolean => rel === 'jobs' || rel === `jobs/${LEAK}`;
      const beforeTree = await snapshotTree(sandbox().dir, skip, typeOnly);
      const run = await rsync('get', LEAK, [...d.args, 'h::work/', `${dest}/`]);
      const content = await allContent(dest);
      const said = run.result.stdout + run.result.stderr;
      expect({
        code: pinned(d.code, run.result.code),
        timedOut: run.result.timedOut,
        // A download changes nothing on the server, not even in the job (its staging tree is gone).
        changes: diffTrees(beforeTree, await snapshotTree(sandbox().dir, skip, typeOnly)),
        files: await listTree(dest),
        leakedHostname: hostname !== '' && content.includes(hostname),
        // Not in a file, and not in a message either (an unparsable merge-file line was echoed).
        leakedSecret: content.includes(TOKEN) || said.includes(TOKEN),
        leakedNames: said.includes('inside.txt') && !d.files.some((f) => f.includes('inside.txt')),
      }, said).toEqual({ code: true, timedOut: false, changes: [], files: d.files, leakedHostname: false, leakedSecret: false, leakedNames: false });
      if (d.stderr) expect(said).toMatch(d.stderr);
    };
    const INSIDE_ONLY = [`f inside.txt 7 ${(0o666 & ~process.umask()).toString(8)}`];
    // The server sends symlinks as symlinks (as MInt's rsync -av returns them; the staging tree's are
    // munged on disk and unmunged on the wire) and never follows one: a client that drops our
    // --safe-links gets the link names and targets, never the content.
    const AS_LINKS = (): string[] => [...INSIDE_ONLY, 'l leak -> /etc/hostname', `l secret -> ${secret}`, 'l up -> ../../'].sort();
    // What the module refuses: the client's exit 4 or 12 (the daemon ends the conversation), nothing
    // arrives, and rsync's own message (a 3.1.3 daemon ends before a 3.5.0 client reads it).
    const REFUSED = which?.includes('3.1.3') ? /server is configured to refuse|connection unexpectedly closed/ : /server is configured to refuse/;

    it('-rtl without --safe-links: the links arrive as links, no target content -> 0', async () => {
      await download({ args: ['-rtl'], code: 0, files: AS_LINKS() });
    });
    it('-rt (no -l): the server skips the links -> 0, only the file', async () => {
      await download({ args: ['-rt'], code: 0, files: INSIDE_ONLY });
    });
    it.each([
      ['-L (follow links on the sender)', ['-rtlL']],
      ['--copy-unsafe-links', ['-rtl', '--copy-unsafe-links']],
      ['-k (copy dirlinks)', ['-rtlk']],
      ['a remote --files-from=:/etc/hostname', ['-rtl', '--files-from=:/etc/hostname']],
      ['--remove-source-files', ['-rtl', '--remove-source-files']],
    ])('%s: refused by the module -> 4 or 12, nothing arrives', async (_name, args) => {
      await download({ args, code: [4, 12], files: [], stderr: REFUSED });
    });
    it('a local --files-from naming the symlinks: refused by the module (files-from) -> 4 or 12, nothing arrives', async () => {
      const list = join(outside, 'want.txt');
      await writeFile(list, 'leak\nsecret\ninside.txt\n');
      await download({ args: ['-rtl', `--files-from=${list}`], code: [4, 12], files: [], stderr: REFUSED });
    });
    it('-D -> 0, nothing but the file and the links', async () => {
      await download({ args: ['-rtlD'], code: 0, files: AS_LINKS() });
    });
    it('--no-munge-links (never sent to a server; the daemon keeps its own setting anyway) -> 0, the links as links', async () => {
      await download({ args: ['-rtl', '--no-munge-links'], code: 0, files: AS_LINKS() });
    });
    it('include rules selecting only the symlinks -> 0, the links, no content', async () => {
      await download({ args: ['-rtl', '--include=leak', '--include=secret', '--exclude=*'], code: 0, files: ['l leak -> /etc/hostname', `l secret -> ${secret}`] });
    });
    it('-z (compression, which daemon mode negotiates) -> 0, the links, no content', async () => {
      await download({ args: ['-rtlz'], code: 0, files: AS_LINKS() });
    });
    it('a path above the module (h::work/../../) is cut back to the module -> 0, the work dir only', async () => {
      const dest = join(outside, `dst-${++caseNo}`);
      await mkdir(dest);
      const run = await rsync('get', LEAK, ['-rtl', 'h::work/../../', `${dest}/`]);
      expect({ code: run.result.code, files: await listTree(dest) }, run.result.stderr).toEqual({ code: 0, files: AS_LINKS() });
    });
    // The exfiltration rules: a merge file named by the client, outside the job (absolute, or ../
    // from the work dir, or through the program's own symlinks out of it). A per-directory rule that
    // names nothing inside the module reads nothing (inside.txt still arrives); a one-off merge of a
    // file that is not there fails the transfer (rsync's "failed to open" is fatal for it), without
    // a byte of the file.
    it.each([
      ['dir-merge,- with an absolute path', () => `dir-merge,- ${secretNames()}`],
      ['dir-merge,- with a ../ path from the work dir', () => `dir-merge,- ${relative(join(sandbox().root, LEAK, LEAK), secretNames())}`],
      [':- shorthand', () => `:- ${secretNames()}`],
      ['dir-merge,- through the program\'s symlink up -> ../../', () => `dir-merge,- up/../${relative(sandbox().root, secretNames())}`],
    ])('exfiltration by %s: the server does not read a merge file outside the job -> 0, inside.txt still arrives', async (_name, rule) => {
      await download({ args: ['-rtl', `--filter=${rule()}`], code: 0, files: AS_LINKS() });
    });
    // Per-directory merge files named like the program's symlinks: in the work dir `secret` would
    // be the secret itself (its line, not valid filter syntax, was echoed back), `leak` /etc/hostname.
    // The staged links are munged, so neither opens. (A one-off `merge FILE` never crosses the wire
    // from a stock client, which reads it itself: export-escape.test.ts sends one by hand.)
    it.each([
      ['dir-merge through the program\'s symlink secret -> SECRET', 'dir-merge secret'],
      ['dir-merge through the program\'s symlink leak -> /etc/hostname', 'dir-merge leak'],
    ])('exfiltration by %s: the link is not followed -> 0, everything arrives', async (_name, rule) => {
      await download({ args: ['-rtl', `--filter=${rule}`], code: 0, files: AS_LINKS() });
    });
  });

  describe('an rsync older than 3.1.0 (no --remote-option to munge the staged links)', () => {
    it('probe says rsync_downloads=no and get is refused (E_CONFIG), never served unconfined', async () => {
      const old = join(outside, 'pre-3.1-rsync');
      await writeFile(
        old,
        '#!/bin/sh\n# The real rsync without --remote-option in --help (as rsync < 3.1.0).\n' +
          'if [ "$1" = --help ]; then /usr/bin/rsync --help | grep -v -e --remote-option; exit 0; fi\nexec /usr/bin/rsync "$@"\n',
      );
      await chmod(old, 0o755);
      await sandbox().reinstall({ rsync: old });
      try {
        const fresh = await openGateway(sandbox(), 1);
        try {
          expect((await fresh.run('mint-gw probe')).stdout.toString()).toMatch(/^rsync_downloads=no$/m);
          const get = await fresh.run(`mint-gw get ${LEAK}`);
          expect({ exit: get.exitCode, stderr: get.stderr.toString() }).toEqual({
            exit: 78,
            stderr: 'mint-gw: error: E_CONFIG: rsync on this computer is older than 3.1.0 (it lacks --remote-option); downloads need rsync >= 3.1.0\n',
          });
        } finally {
          fresh.close();
        }
      } finally {
        await sandbox().reinstall({});
      }
    });
  });

  describe('confinement across all cases', () => {
    it('jobs/ holds only the jobs the cases uploaded to (each with nothing but its work dir), LEAK, and the audit log', async () => {
      expect((await readdir(sandbox().root)).sort()).toEqual([...jobs, LEAK, '.mint-gateway-audit.log', '.mint-gateway.lock'].sort());
      for (const job of jobs) expect(await readdir(join(sandbox().root, job)), job).toEqual([job]);
      expect((await readdir(join(sandbox().root, LEAK))).sort()).toEqual([LEAK, 'exit', 'pid', 'remote_program_exec.log', 'request', 'started'].sort());
    });
  });

  describe('removing the job (mint-gw rm) with its symlinks out of the job', () => {
    it('rm deletes the job without following leak, secret or up -> ../../', async () => {
      const before = await snapshotTree(sandbox().dir, (rel) => ignoreLogs(rel) || rel === `jobs/${LEAK}` || rel.startsWith(`jobs/${LEAK}/`), (rel) => rel === 'jobs');
      const secretBefore = await lstat(secret);
      const hostnameBefore = await lstat('/etc/hostname');
      const r = await gw.run(`mint-gw rm ${LEAK}`);
      expect({ exit: r.exitCode, stdout: r.stdout.toString() }).toEqual({ exit: 0, stdout: '' });
      expect(existsSync(join(sandbox().root, LEAK))).toBe(false);
      // ../../ from the work dir is the job root: everything there, and above, is intact.
      expect(diffTrees(before, await snapshotTree(sandbox().dir, ignoreLogs, (rel) => rel === 'jobs'))).toEqual([]);
      const secretAfter = await lstat(secret);
      expect({ mode: secretAfter.mode, mtimeMs: secretAfter.mtimeMs, ctimeMs: secretAfter.ctimeMs }).toEqual({
        mode: secretBefore.mode,
        mtimeMs: secretBefore.mtimeMs,
        ctimeMs: secretBefore.ctimeMs,
      });
      expect(await readFile(secret, 'utf8')).toBe(`${TOKEN}\n`);
      expect((await lstat('/etc/hostname')).ctimeMs).toBe(hostnameBefore.ctimeMs);
    });
  });
});
