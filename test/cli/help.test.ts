import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { main as sshExec, PROGRAM_SPEC as SSH_EXEC } from '../../src/cli/mint-ssh-exec.js';
import { main as gatewayMain, PROGRAM_SPEC as GATEWAY } from '../../src/cli/mint-gateway.js';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { WIDTH, defineCommand, parserOptions, type CommandSpec, type ProgramSpec } from '../../src/cli/options.js';
import { captureIo, runMain, type Captured } from '../support/cli-io.js';

/** Both CLIs driven in-process; nothing here connects anywhere (help and usage errors come first). */
async function gateway(argv: string[]): Promise<Captured> {
  const { io, out } = captureIo();
  const code = await gatewayMain(argv, io, Readable.from([]));
  await new Promise((r) => setImmediate(r));
  return { code, ...out() };
}

const PROGRAMS: [ProgramSpec, (argv: string[]) => Promise<Captured>][] = [
  [SSH_EXEC, (argv) => runMain(sshExec, argv)],
  [GATEWAY, gateway],
];

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const squash = (text: string): string => text.replace(/\s+/g, ' ');
/** The usage line: the help's first paragraph. */
const usagePart = (help: string): string => help.slice(0, help.indexOf('\n\n'));

const cases = PROGRAMS.flatMap(([program, run]) => program.commands.map((command) => [`${program.program} ${command.name}`, command, run] as const));

describe('--help and -h on every subcommand', () => {
  it('both CLIs have the subcommands they dispatch', () => {
    expect(SSH_EXEC.commands.map((c) => c.name)).toEqual(['probe', 'run', 'attach', 'jobs', 'cancel', 'rm', 'sandbox', 'ca', 'hub', 'agent']);
    expect(GATEWAY.commands.map((c) => c.name)).toEqual(['install', 'uninstall', 'doctor', 'verify-audit']);
  });

  describe.each(cases)('%s', (_, command, run) => {
    it('answers --help and -h with the same text on stdout, exit 0', async () => {
      const long = await run([command.name, '--help']);
      const short = await run([command.name, '-h']);
      expect(long.code).toBe(ExitCode.OK);
      expect(long.stderr).toBe('');
      expect(long.stdout).toMatch(new RegExp(`^usage: ${command.program} ${command.name}\\b`));
      expect(short).toEqual(long);
    });

    it("every option of the parser's table has a description, and the help shows its flags and its description", async () => {
      const { stdout } = await run([command.name, '--help']);
      const options = Object.entries(command.options);
      // The parser's options are exactly the table's (so nothing is parsed that is not described).
      expect(Object.keys(parserOptions(command.options))).toEqual(options.map(([name]) => name));
      expect(options.map(([name]) => name)).toContain('help');
      for (const [name, option] of options) {
        expect(typeof option.description, `--${name} has no description`).toBe('string');
        expect(option.description.trim(), `--${name} has an empty description`).not.toBe('');
        const label = `${option.short ? `-${option.short}, ` : ''}--${name}${option.type === 'string' ? ` ${option.value}` : ''}`;
        expect(stdout, `--help lacks ${label}`).toContain(label);
        expect(squash(stdout), `--help lacks the description of --${name}`).toContain(squash(option.description));
      }
      for (const positional of command.positionals) {
        expect(squash(stdout)).toContain(squash(`${positional.name} ${positional.description}`));
      }
    });

    it('the usage line names every option and argument', async () => {
      const usage = usagePart((await run([command.name, '--help'])).stdout);
      for (const [name, option] of Object.entries(command.options)) {
        if (name === 'help') continue;
        const flag = option.type === 'string' ? (option.short ? `-${option.short} ${option.value}` : `--${name} ${option.value}`) : `--${name}`;
        expect(usage, `usage lacks ${flag}`).toContain(flag);
      }
      for (const positional of command.positionals) expect(usage).toContain(positional.name);
    });

    it(`keeps its lines within ${WIDTH} columns`, async () => {
      const { stdout } = await run([command.name, '--help']);
      for (const line of stdout.split('\n')) expect(line.length, line).toBeLessThanOrEqual(WIDTH);
    });

    it('help COMMAND prints the same as COMMAND --help', async () => {
      expect(await run(['help', command.name])).toEqual(await run([command.name, '--help']));
    });

    it('an unknown option exits with the usage code, names the option and shows the usage', async () => {
      const r = await run([command.name, '--no-such-option']);
      expect(r.code).toBe(ExitCode.USAGE);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(`${command.program}: ${command.name}: unknown option "--no-such-option"`);
      expect(r.stderr).toContain(`usage: ${command.program} ${command.name}`);
      expect(r.stderr).toContain(`'${command.program} ${command.name} --help'`);
    });
  });

  it("run's usage has --job-id (it was missing before the usage was made from the table)", async () => {
    expect(usagePart((await runMain(sshExec, ['run', '--help'])).stdout)).toContain('[--job-id UUID]');
  });

  it('usage errors name what is wrong and exit with the usage code', async () => {
    const missingValue = await runMain(sshExec, ['run', 'host', '-o']);
    expect(missingValue.code).toBe(ExitCode.USAGE);
    expect(missingValue.stderr).toMatch(/^mint-ssh-exec: run: .*-o, --output/);
    const missingHost = await runMain(sshExec, ['run']);
    expect(missingHost.code).toBe(ExitCode.USAGE);
    expect(missingHost.stderr).toMatch(/^mint-ssh-exec: run: missing HOST\nusage: mint-ssh-exec run HOST/);
    const extra = await runMain(sshExec, ['cancel', 'host', 'job', 'more']);
    expect(extra.code).toBe(ExitCode.USAGE);
    expect(extra.stderr).toContain('cancel: unexpected argument "more"');
    const noKey = await gateway(['install', '--print']);
    expect(noKey.code).toBe(ExitCode.USAGE);
    expect(noKey.stderr).toMatch(/^mint-gateway: install: --key FILE\|- is required\nusage: mint-gateway install --key FILE\|- /);
    const flagWithValue = await gateway(['doctor', '--json=yes']);
    expect(flagWithValue.code).toBe(ExitCode.USAGE);
    expect(flagWithValue.stderr).toContain('--json');
    for (const [flag, value] of [['--cpus', '0'], ['--memory', '1.5'], ['--walltime', 'ten']]) {
      const bad = await runMain(sshExec, ['run', 'host', flag, value]);
      expect(bad.code).toBe(ExitCode.USAGE);
      expect(bad.stderr).toContain(`${flag} takes a whole number from 1, got "${value}"`);
    }
  });
});

describe.each(PROGRAMS.map(([program, run]) => ({ name: program.program, program, run })))('$name', ({ program, run }) => {
  it('--help, -h and help print the usage of every subcommand and the list of commands, exit 0', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(ExitCode.OK);
    expect(help.stderr).toBe('');
    for (const command of program.commands) {
      expect(help.stdout).toContain(`  ${program.program} ${command.name} `);
      expect(squash(help.stdout)).toContain(squash(`${command.name} ${command.brief}`));
    }
    expect(help.stdout).toContain('-h, --help');
    expect(help.stdout).toContain('-v, --version');
    for (const line of help.stdout.split('\n')) expect(line.length, line).toBeLessThanOrEqual(WIDTH);
    expect(await run(['-h'])).toEqual(help);
    expect(await run(['help'])).toEqual(help);
  });

  it('--version and -v print the version, exit 0', async () => {
    for (const flag of ['--version', '-v']) {
      const r = await run([flag]);
      expect(r.code).toBe(ExitCode.OK);
      expect(r.stdout).toBe(`${VERSION}\n`);
    }
  });

  it('no command prints the help and exits with the usage code', async () => {
    const r = await run([]);
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stdout).toBe((await run(['--help'])).stdout);
  });

  it('an unknown command or option exits with the usage code and says which', async () => {
    const command = await run(['frobnicate']);
    expect(command.code).toBe(ExitCode.USAGE);
    expect(command.stderr).toMatch(new RegExp(`^${program.program}: unknown command "frobnicate"\\nusage:\\n`));
    const option = await run(['--frobnicate']);
    expect(option.code).toBe(ExitCode.USAGE);
    expect(option.stderr).toMatch(new RegExp(`^${program.program}: unknown option "--frobnicate"\\nusage:\\n`));
    expect((await run(['help', 'frobnicate'])).code).toBe(ExitCode.USAGE);
  });
});

describe('defineCommand', () => {
  const base = { program: 'p', name: 'c', brief: 'b', summary: 's', positionals: [] } satisfies Omit<CommandSpec, 'options'>;

  it('adds -h/--help and refuses a table that defines it or gives one letter to two options', () => {
    expect(Object.keys(defineCommand({ ...base, options: { x: { type: 'boolean', description: 'x' } } }).options)).toEqual(['x', 'help']);
    expect(() => defineCommand({ ...base, options: { help: { type: 'boolean', description: 'h' } } })).toThrow(/--help/);
    expect(() =>
      defineCommand({
        ...base,
        options: { one: { type: 'boolean', short: 'x', description: '1' }, two: { type: 'boolean', short: 'x', description: '2' } },
      }),
    ).toThrow(/-x/);
    expect(() => defineCommand({ ...base, options: { hat: { type: 'boolean', short: 'h', description: 'h' } } })).toThrow(/-h/);
  });
});
