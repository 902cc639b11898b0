/** `mint-gateway`: install, uninstall and check the gateway on the external computer. */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { install, lineChanges, uninstall, type Scheduler } from '../site/install.js';
import { doctor } from '../site/doctor.js';
import { auditLogOf, verifyAuditLog } from '../site/audit-chain.js';
import { ExitCode } from './exit-codes.js';
import { defineCommand, parseCommand, printHelp, programHelp, unknownCommand, type ProgramSpec } from './options.js';
import { printJson, processIo, type Io } from './output.js';
import { reportError, version } from './mint-ssh-exec.js';

function defaults(home: string): { root: string; program: string; gatewayPath: string; dest: string } {
  return {
    root: join(home, 'mint-jobs'),
    program: join(home, 'misrc_remote_workflow', 'scripts', 'execute_remote-side_program_ssh.sh'),
    gatewayPath: join(home, '.mint', 'mint-gateway.sh'),
    dest: join(home, '.ssh', 'authorized_keys'),
  };
}

// Where things are on this computer: install writes them, doctor checks them.
const pathOptions = {
  root: { type: 'string', value: 'DIR', description: 'the job root, one dir per job (default: ~/mint-jobs)' },
  program: {
    type: 'string',
    value: 'PATH',
    description: 'the program every job runs (default: ~/misrc_remote_workflow/scripts/execute_remote-side_program_ssh.sh)',
  },
  'gateway-path': { type: 'string', value: 'PATH', description: 'where the gateway script goes (default: ~/.mint/mint-gateway.sh)' },
  dest: { type: 'string', value: 'FILE', description: 'the authorized_keys file, e.g. an authorized_keys.d/ fragment (default: ~/.ssh/authorized_keys)' },
} as const;

const PROGRAM = 'mint-gateway';

export const installSpec = defineCommand({
  program: PROGRAM,
  name: 'install',
  brief: "install the gateway for MInt's key: the script, the job root and the key's line",
  summary:
    "Install the gateway for MInt's key on this computer: copy the gateway script, create the job root and " +
    "write the key's forced-command line to authorized_keys (re-running updates that line in place).",
  positionals: [],
  options: {
    key: { type: 'string', value: 'FILE|-', required: true, description: "MInt's public key, or - to read it from stdin" },
    ...pathOptions,
    program: {
      type: 'string',
      value: 'PATH|NAME=PATH',
      multiple: true,
      description: 'the program a job runs (default: ~/misrc_remote_workflow/scripts/execute_remote-side_program_ssh.sh); NAME=PATH adds one a client picks by name',
    },
    'allow-env': { type: 'string', value: 'NAMES', description: 'variables (comma-separated names) a client may set for the program' },
    'key-name': { type: 'string', value: 'NAME', description: "the key's name in the gateway's audit log" },
    from: { type: 'string', value: 'PATTERNS', description: "sshd's from=: where the key is accepted from (e.g. MInt's proxy address)" },
    'expiry-time': { type: 'string', value: 'TIME', description: "sshd's expiry-time=: YYYYMMDD[HHMM[SS]][Z], when the key stops working" },
    'cert-authority': { type: 'boolean', description: "trust OpenSSH user certificates signed by this key (MInt's CA) instead of the key" },
    principals: { type: 'string', value: 'NAMES', description: 'with --cert-authority: the certificate principals accepted' },
    'enforce-job-scope': {
      type: 'boolean',
      description: "refuse every request unless sshd exposes the key that logged in (ExposeAuthInfo yes), so a per-job certificate opens its job only",
    },
    'hash-uploads': {
      type: 'boolean',
      description: "hash big inputs while they upload, so the start's check reads only what changed (for a site with a core to spare)",
    },
    export: { type: 'string', value: 'GLOBS', description: 'rsync include patterns (comma-separated): only matching files leave a job' },
    'max-jobs': { type: 'string', value: 'N', description: 'at most N jobs running at once' },
    'min-free-mb': { type: 'string', value: 'N', description: 'keep N MB free under the job root (uploads stop, starts are refused)' },
    'min-free-inodes': { type: 'string', value: 'N', description: 'keep N inodes free under the job root' },
    'max-job-mb': { type: 'string', value: 'N', description: "cap on a job dir's size in MB, held during every upload" },
    'max-job-files': { type: 'string', value: 'N', description: "cap on a job dir's number of files and dirs" },
    'max-age-days': { type: 'string', value: 'N', description: 'finished jobs older than N days are removed when a new job starts' },
    'client-timeout': { type: 'string', value: 'SECONDS', description: 'how long the gateway waits on a silent client (default: 600)' },
    grace: { type: 'string', value: 'SECONDS', description: "seconds between cancel's TERM and KILL (default: 10)" },
    env: { type: 'string', value: 'NAME=VALUE', multiple: true, description: 'a variable every program gets, e.g. LANG=ja_JP.UTF-8' },
    'allow-unconfined-rsync': { type: 'boolean', description: 'obsolete, ignored: downloads are confined on any rsync >= 3.1.0' },
    scheduler: { type: 'string', value: 'NAME', description: 'where programs run: slurm, sge, pbs (a batch scheduler) or none (this host, the default)' },
    'scheduler-args': { type: 'string', value: 'OPTS', description: "site-fixed submission options, given with '=': --scheduler-args='-p short -A mint'" },
    'scheduler-bin': { type: 'string', value: 'DIR', description: "the scheduler's commands, if not in /usr/bin or /bin (/opt/pbs/bin)" },
    'max-cpus': { type: 'string', value: 'N', description: 'with --scheduler: the most CPUs a job may ask for' },
    'max-memory-mb': { type: 'string', value: 'N', description: 'with --scheduler: the most memory (MB) a job may ask for' },
    'max-walltime-min': { type: 'string', value: 'N', description: 'with --scheduler: the longest walltime (minutes) a job may ask for' },
    print: { type: 'boolean', description: 'only print the authorized_keys line; write nothing' },
  },
});

export const uninstallSpec = defineCommand({
  program: PROGRAM,
  name: 'uninstall',
  brief: "remove the key's mint-gateway line",
  summary: "Remove exactly the mint-gateway line of this key from authorized_keys (the gateway and job root stay).",
  positionals: [],
  options: {
    key: { type: 'string', value: 'FILE|-', required: true, description: 'the public key whose line goes, or - to read it from stdin' },
    dest: pathOptions.dest,
  },
});

export const doctorSpec = defineCommand({
  program: PROGRAM,
  name: 'doctor',
  brief: 'check what defeats the gateway or slows it, with a fix for each',
  summary:
    'Check what defeats a forced command or breaks the protocol here (~/.ssh/rc, sshd settings, the login ' +
    'shell, permissions, rsync/setsid/flock, the program), with a fix for each line that is not ok.',
  positionals: [],
  options: {
    ...pathOptions,
    sshd: { type: 'string', value: 'PATH', description: "the sshd asked for its settings with 'sshd -T' (default: sshd)" },
    json: { type: 'boolean', description: "print every check and its status as JSON on stdout" },
  },
  notes: ['exit status: 1 when a check FAILs, else 0 (warnings and SKIPPED checks included); 2 is a usage error'],
});

export const verifyAuditSpec = defineCommand({
  program: PROGRAM,
  name: 'verify-audit',
  brief: "check the audit log's hash chain: name each edited, deleted or inserted line",
  summary:
    "Check the gateway's audit log (ROOT/.mint-gateway-audit.log): every line names the hash of the line before it, " +
    'so an edited, deleted or inserted line breaks the chain where it was; each break is printed with its line number.',
  positionals: [],
  options: {
    root: pathOptions.root,
    head: {
      type: 'string',
      value: 'HASH',
      multiple: true,
      description: "a chain head a client kept (its job record's audit.headAtTake): some line must have this hash",
    },
    json: { type: 'boolean', description: 'print the report as JSON on stdout' },
  },
  notes: ['exit status: 0 when the chain holds, 1 when a line breaks it (or a --head is not in it), 2 is a usage error'],
});

export const PROGRAM_SPEC: ProgramSpec = {
  program: PROGRAM,
  summary: 'Install, remove and check the mint-ssh-exec gateway on the external computer, as the account MInt logs in as.',
  commands: [installSpec, uninstallSpec, doctorSpec, verifyAuditSpec],
};

export async function main(argv: string[] = process.argv.slice(2), io: Io = processIo, stdin: NodeJS.ReadableStream = process.stdin): Promise<number> {
  const [command, ...rest] = argv;
  const home = io.env.HOME ?? homedir();
  const d = defaults(home);
  try {
    switch (command) {
      case 'install': {
        const { values } = parseCommand(installSpec, rest);
        if (values.help) return printHelp(io, installSpec);
        const number = (flag: string, v: string | undefined): number | undefined => {
          if (v === undefined) return undefined;
          if (!/^\d+$/.test(v)) throw new ConfigError(`${flag} must be a whole number, got ${JSON.stringify(v)}`);
          return Number(v);
        };
        const maxJobs = number('--max-jobs', values['max-jobs']);
        const minFreeMb = number('--min-free-mb', values['min-free-mb']);
        const maxAgeDays = number('--max-age-days', values['max-age-days']);
        const minFreeInodes = number('--min-free-inodes', values['min-free-inodes']);
        const maxJobMb = number('--max-job-mb', values['max-job-mb']);
        const maxJobFiles = number('--max-job-files', values['max-job-files']);
        const clientTimeout = number('--client-timeout', values['client-timeout']);
        const grace = number('--grace', values.grace);
        const maxCpus = number('--max-cpus', values['max-cpus']);
        const maxMemoryMb = number('--max-memory-mb', values['max-memory-mb']);
        const maxWalltimeMin = number('--max-walltime-min', values['max-walltime-min']);
        const outcome = await install({
          home,
          publicKey: await readKey(values.key, stdin),
          gatewayPath: abs(values['gateway-path'] ?? d.gatewayPath),
          authorizedKeys: abs(values.dest ?? d.dest),
          gateway: {
            root: abs(values.root ?? d.root),
            ...programOptions(values.program ?? [], d.program),
            ...(values['key-name'] ? { keyName: values['key-name'] } : {}),
            ...(values.export ? { export: values.export } : {}),
            ...(maxJobs !== undefined ? { maxJobs } : {}),
            ...(minFreeMb !== undefined ? { minFreeMb } : {}),
            ...(maxAgeDays !== undefined ? { maxAgeDays } : {}),
            ...(minFreeInodes !== undefined ? { minFreeInodes } : {}),
            ...(maxJobMb !== undefined ? { maxJobMb } : {}),
            ...(maxJobFiles !== undefined ? { maxJobFiles } : {}),
            ...(clientTimeout !== undefined ? { clientTimeout } : {}),
            ...(grace !== undefined ? { grace } : {}),
            ...(values.env?.length ? { env: values.env } : {}),
            ...(values['allow-env'] ? { allowEnv: values['allow-env'].split(',') } : {}),
            // install.ts refuses any other word, with the reason.
            ...(values.scheduler !== undefined ? { scheduler: values.scheduler as Scheduler } : {}),
            ...(values['scheduler-args'] !== undefined ? { schedulerArgs: values['scheduler-args'] } : {}),
            ...(values['scheduler-bin'] !== undefined ? { schedulerBin: values['scheduler-bin'] } : {}),
            ...(maxCpus !== undefined ? { maxCpus } : {}),
            ...(maxMemoryMb !== undefined ? { maxMemoryMb } : {}),
            ...(maxWalltimeMin !== undefined ? { maxWalltimeMin } : {}),
            ...(values['enforce-job-scope'] ? { enforceJobScope: true } : {}),
            ...(values['hash-uploads'] ? { hashUploads: true } : {}),
          },
          restrictions: {
            ...(values.from ? { from: values.from } : {}),
            ...(values['expiry-time'] ? { expiryTime: values['expiry-time'] } : {}),
            ...(values['cert-authority'] ? { certAuthority: true } : {}),
            ...(values.principals ? { principals: values.principals } : {}),
          },
          ...(values.print ? { print: true } : {}),
        });
        if (outcome.action === 'printed') {
          io.stdout.write(`${outcome.line}\n`);
          return ExitCode.OK;
        }
        io.stdout.write(`${outcome.action} the mint-gateway line in ${abs(values.dest ?? d.dest)}\ngateway: ${abs(values['gateway-path'] ?? d.gatewayPath)}\n${outcome.line}\n`);
        if (outcome.previous !== undefined) {
          // The line is rebuilt from this command's options alone: say what that dropped and added.
          const { removed, added } = lineChanges(outcome.previous, outcome.line);
          for (const word of removed) io.stdout.write(`removed: ${word}\n`);
          for (const word of added) io.stdout.write(`added: ${word}\n`);
        }
        return ExitCode.OK;
      }
      case 'uninstall': {
        const { values } = parseCommand(uninstallSpec, rest);
        if (values.help) return printHelp(io, uninstallSpec);
        const removed = await uninstall({ publicKey: await readKey(values.key, stdin), authorizedKeys: abs(values.dest ?? d.dest) });
        io.stdout.write(removed ? 'removed the mint-gateway line\n' : 'no mint-gateway line for that key\n');
        return ExitCode.OK;
      }
      case 'doctor': {
        const { values } = parseCommand(doctorSpec, rest);
        if (values.help) return printHelp(io, doctorSpec);
        const checks = await doctor({
          root: abs(values.root ?? d.root),
          program: abs(values.program ?? d.program),
          gatewayPath: abs(values['gateway-path'] ?? d.gatewayPath),
          authorizedKeys: abs(values.dest ?? d.dest),
          home,
          ...(values.sshd ? { sshd: values.sshd } : {}),
        });
        const counts = { ok: 0, warn: 0, skipped: 0, error: 0 };
        for (const c of checks) counts[c.status] += 1;
        // Only errors fail: a skipped check was not passed, but nothing was found wrong either.
        const ok = counts.error === 0;
        if (values.json) printJson(io, { ok, counts, checks });
        else {
          const label = { ok: '[ ok ]', warn: '[warn]', error: '[FAIL]', skipped: '[SKIPPED]' } as const;
          const indent = ' '.repeat(2 + 9 + 1 + 20 + 1);
          for (const c of checks) {
            io.stdout.write(`  ${label[c.status].padEnd(9)} ${c.check.padEnd(20)} ${c.detail}\n`);
            if (c.fix && c.status !== 'ok') io.stdout.write(`${indent}fix: ${c.fix}\n`);
          }
          const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;
          io.stdout.write(`  summary: ${counts.ok} ok, ${plural(counts.warn, 'warning', 'warnings')}, ${counts.skipped} skipped, ${plural(counts.error, 'error', 'errors')}\n`);
          io.stdout.write(
            !ok
              ? '  verdict: fix the FAIL lines above\n'
              : counts.skipped
                ? '  verdict: the gateway holds as far as checked; the SKIPPED lines were not checked: check them as their fix says\n'
                : '  verdict: the gateway holds\n',
          );
        }
        return ok ? ExitCode.OK : ExitCode.FAILED;
      }
      case 'verify-audit': {
        const { values } = parseCommand(verifyAuditSpec, rest);
        if (values.help) return printHelp(io, verifyAuditSpec);
        const file = auditLogOf(abs(values.root ?? d.root));
        for (const h of values.head ?? []) if (!/^[0-9a-fA-F]{64}$/.test(h)) throw new ConfigError(`--head takes a SHA-256 in hex, got ${JSON.stringify(h)}`);
        const report = await verifyAuditLog(file, values.head ?? []).catch((error: NodeJS.ErrnoException) => {
          throw new ConfigError(`cannot read the audit log ${file} (${error.code ?? error.message})`);
        });
        if (values.json) printJson(io, report);
        else {
          for (const p of report.problems) io.stdout.write(`${file}:${p.line}: ${p.message}\n`);
          for (const h of report.heads) if (h.line !== undefined) io.stdout.write(`head ${h.head}: line ${h.line}\n`);
          const old = report.unchained > 0 ? ` (the first ${report.unchained} from a gateway before the chain)` : '';
          io.stdout.write(report.ok ? `ok: ${report.lines} lines${old}, the chain holds; head ${report.head}\n` : `FAIL: ${report.problems.length} break(s) in ${report.lines} lines\n`);
        }
        return report.ok ? ExitCode.OK : ExitCode.FAILED;
      }
      case '--version':
      case '-v':
        io.stdout.write(`${version()}\n`);
        return ExitCode.OK;
      case 'help':
        // `help COMMAND` is `COMMAND --help`.
        if (rest[0] !== undefined) return await main([rest[0], '--help'], io, stdin);
        io.stdout.write(programHelp(PROGRAM_SPEC));
        return ExitCode.OK;
      case undefined:
      case '--help':
      case '-h':
        io.stdout.write(programHelp(PROGRAM_SPEC));
        return command === undefined ? ExitCode.USAGE : ExitCode.OK;
      default:
        throw unknownCommand(PROGRAM_SPEC, command);
    }
  } catch (error) {
    return reportError(io, error, 'mint-gateway');
  }
}

function abs(path: string): string {
  return resolve(path);
}

async function readKey(source: string, stdin: NodeJS.ReadableStream): Promise<string> {
  if (source !== '-') {
    try {
      return await readFile(source, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read public key ${source}: ${(error as Error).message}`);
    }
  }
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** `--program PATH` (the default, at most one) and `--program NAME=PATH` (named, repeatable). */
function programOptions(given: readonly string[], fallback: string): { program: string; programs?: Record<string, string> } {
  const plain = given.filter((p) => !p.includes('='));
  if (plain.length > 1) throw new ConfigError('--program PATH may be given once (add others as --program NAME=PATH)');
  const programs: Record<string, string> = {};
  for (const named of given.filter((p) => p.includes('='))) {
    const eq = named.indexOf('=');
    programs[named.slice(0, eq)] = abs(named.slice(eq + 1));
  }
  return { program: abs(plain[0] ?? fallback), ...(Object.keys(programs).length ? { programs } : {}) };
}
