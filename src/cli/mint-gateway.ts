/** `mint-gateway`: install, uninstall and check the gateway on the external computer. */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../errors.js';
import { install, uninstall } from '../site/install.js';
import { doctor } from '../site/doctor.js';
import { ExitCode, UsageError } from './exit-codes.js';
import { printJson, processIo, type Io } from './output.js';
import { reportError, version } from './mint-ssh-exec.js';

const USAGE = `usage:
  mint-gateway install --key FILE|- [--root DIR] [--program PATH] [--gateway-path PATH] [--dest FILE]
                       [--key-name NAME] [--from PATTERNS] [--expiry-time YYYYMMDD[HHMM[SS]][Z]]
                       [--cert-authority [--principals NAMES]] [--export GLOBS] [--max-jobs N]
                       [--min-free-mb N] [--min-free-inodes N] [--max-job-mb N] [--max-job-files N]
                       [--max-age-days N] [--client-timeout SECONDS] [--env NAME=VALUE]...
                       [--allow-unconfined-rsync] [--print]
  mint-gateway uninstall --key FILE|- [--dest FILE]
  mint-gateway doctor [--root DIR] [--program PATH] [--gateway-path PATH] [--dest FILE] [--sshd PATH] [--json]`;

function defaults(home: string): { root: string; program: string; gatewayPath: string; dest: string } {
  return {
    root: join(home, 'mint-jobs'),
    program: join(home, 'misrc_remote_workflow', 'scripts', 'execute_remote-side_program_ssh.sh'),
    gatewayPath: join(home, '.mint', 'mint-gateway.sh'),
    dest: join(home, '.ssh', 'authorized_keys'),
  };
}

const pathOptions = {
  root: { type: 'string' },
  program: { type: 'string' },
  'gateway-path': { type: 'string' },
  dest: { type: 'string' },
} as const;

export async function main(argv: string[] = process.argv.slice(2), io: Io = processIo, stdin: NodeJS.ReadableStream = process.stdin): Promise<number> {
  const [command, ...rest] = argv;
  const home = io.env.HOME ?? homedir();
  const d = defaults(home);
  try {
    switch (command) {
      case 'install': {
        const { values, positionals } = parseArgs({
          args: rest,
          allowPositionals: true,
          options: {
            ...pathOptions,
            key: { type: 'string' },
            'key-name': { type: 'string' },
            from: { type: 'string' },
            'expiry-time': { type: 'string' },
            'cert-authority': { type: 'boolean' },
            principals: { type: 'string' },
            export: { type: 'string' },
            'max-jobs': { type: 'string' },
            'min-free-mb': { type: 'string' },
            'min-free-inodes': { type: 'string' },
            'max-job-mb': { type: 'string' },
            'max-job-files': { type: 'string' },
            'client-timeout': { type: 'string' },
            env: { type: 'string', multiple: true },
            'max-age-days': { type: 'string' },
            print: { type: 'boolean' },
            'allow-unconfined-rsync': { type: 'boolean' },
          },
        });
        if (positionals.length || !values.key) throw new UsageError(USAGE);
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
        const outcome = await install({
          publicKey: await readKey(values.key, stdin),
          gatewayPath: abs(values['gateway-path'] ?? d.gatewayPath),
          authorizedKeys: abs(values.dest ?? d.dest),
          gateway: {
            root: abs(values.root ?? d.root),
            program: abs(values.program ?? d.program),
            ...(values['key-name'] ? { keyName: values['key-name'] } : {}),
            ...(values.export ? { export: values.export } : {}),
            ...(maxJobs !== undefined ? { maxJobs } : {}),
            ...(minFreeMb !== undefined ? { minFreeMb } : {}),
            ...(maxAgeDays !== undefined ? { maxAgeDays } : {}),
            ...(minFreeInodes !== undefined ? { minFreeInodes } : {}),
            ...(maxJobMb !== undefined ? { maxJobMb } : {}),
            ...(maxJobFiles !== undefined ? { maxJobFiles } : {}),
            ...(clientTimeout !== undefined ? { clientTimeout } : {}),
            ...(values.env?.length ? { env: values.env } : {}),
            ...(values['allow-unconfined-rsync'] ? { allowUnconfinedRsync: true } : {}),
          },
          restrictions: {
            ...(values.from ? { from: values.from } : {}),
            ...(values['expiry-time'] ? { expiryTime: values['expiry-time'] } : {}),
            ...(values['cert-authority'] ? { certAuthority: true } : {}),
            ...(values.principals ? { principals: values.principals } : {}),
          },
          ...(values.print ? { print: true } : {}),
        });
        if (outcome.action === 'printed') io.stdout.write(`${outcome.line}\n`);
        else io.stdout.write(`${outcome.action} the mint-gateway line in ${abs(values.dest ?? d.dest)}\ngateway: ${abs(values['gateway-path'] ?? d.gatewayPath)}\n${outcome.line}\n`);
        return ExitCode.OK;
      }
      case 'uninstall': {
        const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { key: { type: 'string' }, dest: { type: 'string' } } });
        if (positionals.length || !values.key) throw new UsageError(USAGE);
        const removed = await uninstall({ publicKey: await readKey(values.key, stdin), authorizedKeys: abs(values.dest ?? d.dest) });
        io.stdout.write(removed ? 'removed the mint-gateway line\n' : 'no mint-gateway line for that key\n');
        return ExitCode.OK;
      }
      case 'doctor': {
        const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { ...pathOptions, sshd: { type: 'string' }, json: { type: 'boolean' } } });
        if (positionals.length) throw new UsageError(USAGE);
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
      case '--version':
        io.stdout.write(`${version()}\n`);
        return ExitCode.OK;
      case '--help':
      case undefined:
        io.stdout.write(`${USAGE}\n`);
        return command ? ExitCode.OK : ExitCode.USAGE;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
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
