/**
 * One table per subcommand says everything about its options: the parser's `options` object, the
 * usage line and the `--help` text are all made from it, so an option cannot be parsed without
 * being documented (nor documented without being parsed).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ExitCode, UsageError } from './exit-codes.js';
import type { Io } from './output.js';

/** Help and usage lines end by this column where the words allow. */
export const WIDTH = 100;

interface OptionBase {
  /** One letter: `-o` for `--output`. */
  readonly short?: string;
  /** One line for `--help`. */
  readonly description: string;
}

export interface FlagOption extends OptionBase {
  readonly type: 'boolean';
}

export interface ValueOption extends OptionBase {
  readonly type: 'string';
  /** The value's name in the usage and help: `N`, `FILE`, `DIR`. */
  readonly value: string;
  /** May be given more than once; the values are collected in order. */
  readonly multiple?: boolean;
  /** The command cannot run without it (shown without brackets in the usage). */
  readonly required?: boolean;
}

export type OptionSpec = FlagOption | ValueOption;
export type OptionTable = Readonly<Record<string, OptionSpec>>;

export interface PositionalSpec {
  /** As written in the usage: `HOST`, `HOST...`, `[FILE...]`. */
  readonly name: string;
  readonly description: string;
}

export interface CommandSpec<T extends OptionTable = OptionTable> {
  readonly program: string;
  /** The subcommand's name, e.g. `run`. */
  readonly name: string;
  /** What it does, in a few words (the program's list of commands). */
  readonly brief: string;
  /** What it does, in a sentence or two (printed, wrapped, under the usage by `--help`). */
  readonly summary: string;
  readonly positionals: readonly PositionalSpec[];
  readonly options: T;
  /** Paragraphs printed after the options (exit codes, environment...), each wrapped. */
  readonly notes?: readonly string[];
}

/** Every subcommand answers `-h`/`--help`; it is in the table so the parser knows it too. */
export const HELP_OPTION = { type: 'boolean', short: 'h', description: 'print this help and exit' } as const satisfies FlagOption;

type WithHelp<T extends OptionTable> = T & { readonly help: typeof HELP_OPTION };

/** Adds `--help` to a subcommand's table and checks that no two options share a name. */
export function defineCommand<const T extends OptionTable>(spec: CommandSpec<T>): CommandSpec<WithHelp<T>> {
  if ('help' in spec.options) throw new Error(`${spec.name}: --help is added by defineCommand`);
  const options = { ...spec.options, help: HELP_OPTION } as WithHelp<T>;
  const shorts = Object.values(options as OptionTable).flatMap((o) => (o.short ? [o.short] : []));
  const repeated = shorts.find((s, i) => shorts.indexOf(s) !== i);
  if (repeated) throw new Error(`${spec.name}: -${repeated} is given to two options`);
  return { ...spec, options };
}

type ValueOf<O extends OptionSpec> = O extends ValueOption ? (O['multiple'] extends true ? string[] : string) : boolean;
type RequiredKeys<T extends OptionTable> = { [K in keyof T]: T[K] extends { required: true } ? K : never }[keyof T];

/** What the parser returns for a table: required options are present, the others may be missing. */
export type OptionValues<T extends OptionTable> = { -readonly [K in Exclude<keyof T, RequiredKeys<T>>]?: ValueOf<T[K]> } & {
  -readonly [K in RequiredKeys<T>]: ValueOf<T[K]>;
};

/** The `options` object node:util parseArgs takes, derived from the table. */
export function parserOptions(table: OptionTable): NonNullable<ParseArgsConfig['options']> {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, spec] of Object.entries(table)) {
    options[name] = {
      type: spec.type,
      ...(spec.short ? { short: spec.short } : {}),
      ...(spec.type === 'string' && spec.multiple ? { multiple: true } : {}),
    };
  }
  return options;
}

/**
 * Parses a subcommand's arguments. Unknown options and missing values become usage errors that
 * show the usage line; so do a missing required option and too few or too many positional
 * arguments, unless `--help` was asked for.
 */
export function parseCommand<T extends OptionTable>(spec: CommandSpec<T>, args: string[]): { values: OptionValues<T>; positionals: string[] } {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options: parserOptions(spec.options) });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (!code?.startsWith('ERR_PARSE_ARGS')) throw error;
    const unknown = code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /^Unknown option '([^']*)'/.exec((error as Error).message)?.[1] : undefined;
    throw usageError(spec, unknown ? `unknown option ${JSON.stringify(unknown)}` : (error as Error).message);
  }
  if (!parsed.values.help) {
    for (const [name, option] of Object.entries(spec.options)) {
      if (option.type === 'string' && option.required && !parsed.values[name]) throw usageError(spec, `--${name} ${option.value} is required`);
    }
    checkPositionals(spec, parsed.positionals);
  }
  return parsed as { values: OptionValues<T>; positionals: string[] };
}

/** Counts the positional arguments against their descriptions: `[X]` is optional, `X...` takes any number. */
function checkPositionals(spec: CommandSpec, positionals: string[]): void {
  const required = spec.positionals.filter((p) => !p.name.startsWith('['));
  const missing = required[positionals.length];
  if (missing) throw usageError(spec, `missing ${missing.name.replace('...', '')}`);
  const unbounded = spec.positionals.some((p) => p.name.includes('...'));
  const extra = positionals[spec.positionals.length];
  if (!unbounded && extra !== undefined) throw usageError(spec, `unexpected argument ${JSON.stringify(extra)}`);
}

/** A usage error for this subcommand: what was wrong (if said), its usage line, and where help is. */
export function usageError(spec: CommandSpec, problem?: string): UsageError {
  return new UsageError(
    `${problem ? `${spec.name}: ${problem}\n` : ''}usage: ${synopsis(spec, 'usage: '.length)}\n` +
      `see '${spec.program} ${spec.name} --help' for what each option does`,
  );
}

/** In the usage line: `[-o DIR]` for a value option with a short name, else `[--name VALUE]` or `[--flag]`. */
function synopsisOption(name: string, option: OptionSpec): string {
  const flag = option.type === 'string' ? (option.short ? `-${option.short} ${option.value}` : `--${name} ${option.value}`) : `--${name}`;
  if (option.type === 'string' && option.required) return flag;
  return option.type === 'string' && option.multiple ? `[${flag}]...` : `[${flag}]`;
}

/**
 * The usage line, wrapped at `width` columns; continuation lines line up under the first argument.
 * `indent` is how far in the first line starts (what precedes it on its line).
 */
export function synopsis(spec: CommandSpec, indent = 0, width = WIDTH): string {
  const head = `${spec.program} ${spec.name}`;
  const words = [
    ...spec.positionals.map((p) => p.name),
    ...Object.entries(spec.options)
      .filter(([name]) => name !== 'help')
      .map(([name, option]) => synopsisOption(name, option)),
  ];
  const pad = ' '.repeat(indent + head.length + 1);
  const lines: string[] = [];
  let line = head;
  for (const word of words) {
    if (line !== head && line.length + 1 + word.length > width - indent) {
      lines.push(line);
      line = pad.slice(indent) + word;
    } else line += ` ${word}`;
  }
  lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

/** How an option is written in the help's left column: `-o, --output DIR` or `    --json`. */
export function optionLabel(name: string, option: OptionSpec): string {
  const long = `--${name}${option.type === 'string' ? ` ${option.value}` : ''}`;
  return `${option.short ? `-${option.short}, ` : '    '}${long}`;
}

/**
 * Fills words into lines of at most `width` columns; the first line follows `first`, the others
 * `rest`. A no-break space (U+00A0) holds two words together and is printed as a space.
 */
export function wrap(text: string, first = '', rest = first, width = WIDTH): string {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const word of text.split(/[ \t\n]+/).filter(Boolean)) {
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line);
      line = rest + word;
    } else line += empty ? word : ` ${word}`;
    empty = false;
  }
  lines.push(line);
  return lines.join('\n').replace(/\u00a0/g, ' ');
}

/** `a b` that `wrap` never breaks. */
export function together(...words: string[]): string {
  return words.join('\u00a0');
}

/** Rows of `  left  text`, the text column lined up and wrapped under itself. */
export function columns(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, text]) => wrap(text, `  ${left.padEnd(width)}  `, ' '.repeat(width + 4))).join('\n');
}

export function helpText(spec: CommandSpec): string {
  const parts = [`usage: ${synopsis(spec, 'usage: '.length)}`, '', wrap(spec.summary)];
  if (spec.positionals.length) parts.push('', 'arguments:', columns(spec.positionals.map((p) => [p.name, p.description])));
  parts.push(
    '',
    'options:',
    columns(
      Object.entries(spec.options).map(([name, option]) => [
        optionLabel(name, option),
        `${option.description}${option.type === 'string' && option.multiple ? ' (repeatable)' : ''}${option.type === 'string' && option.required ? ' (required)' : ''}`,
      ]),
    ),
  );
  if (spec.notes?.length) parts.push('', ...spec.notes.map((note) => wrap(note, '', '  ')));
  return `${parts.join('\n')}\n`;
}

/** A program's own options: the ones it answers without a subcommand. */
export const PROGRAM_OPTIONS = {
  help: { type: 'boolean', short: 'h', description: 'print this help and exit' },
  version: { type: 'boolean', short: 'v', description: 'print the version and exit' },
} as const satisfies OptionTable;

export interface ProgramSpec {
  readonly program: string;
  readonly summary: string;
  readonly commands: readonly CommandSpec[];
}

/** Every subcommand's usage line, then the program's own forms. */
export function programUsage(spec: ProgramSpec): string {
  return [
    'usage:',
    ...spec.commands.map((command) => `  ${synopsis(command, 2)}`),
    `  ${spec.program} --version`,
    `  ${spec.program} COMMAND --help`,
  ].join('\n');
}

/** Something that is no subcommand (an option before one, a typo): said, with the usage. */
export function unknownCommand(spec: ProgramSpec, command: string): UsageError {
  const what = command.startsWith('-') ? `unknown option ${JSON.stringify(command)}` : `unknown command ${JSON.stringify(command)}`;
  return new UsageError(`${what}\n${programUsage(spec)}`);
}

export function programHelp(spec: ProgramSpec): string {
  return [
    programUsage(spec),
    '',
    wrap(spec.summary),
    '',
    'commands:',
    columns(spec.commands.map((command) => [command.name, command.brief])),
    '',
    'options:',
    columns(Object.entries(PROGRAM_OPTIONS).map(([name, option]) => [optionLabel(name, option), option.description])),
    '',
    wrap(`'${spec.program} COMMAND --help' (or '${spec.program} help COMMAND') explains a command and each of its options.`),
    '',
  ].join('\n');
}

/** Prints a subcommand's help on stdout; `--help` is a success. */
export function printHelp(io: Io, spec: CommandSpec): number {
  io.stdout.write(helpText(spec));
  return ExitCode.OK;
}
