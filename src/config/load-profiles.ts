/**
 * Reads `hosts.yaml` and, when it is wrong, says where and how in words a person can act on:
 *
 *   hosts.yaml:7:11: hosts.calc-site.port: expected an integer from 1 to 65535, got "fifty"
 *
 * Zod finds the problems; this file maps each one back to the YAML node it came from and rewords it.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { ProfilesFileSchema, type HostProfile } from './profile-schema.js';

type Issue = z.core.$ZodIssue;
type Path = readonly PropertyKey[];

export function defaultProfilesPath(env: NodeJS.ProcessEnv = process.env, homeDir?: string): string {
  if (env.MINT_SSH_EXEC_CONFIG) return env.MINT_SSH_EXEC_CONFIG;
  // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
  const xdg = env.XDG_CONFIG_HOME;
  const configHome = xdg && isAbsolute(xdg) ? xdg : join(homeDir ?? (env.HOME || homedir()), '.config');
  return join(configHome, 'mint-ssh-exec', 'hosts.yaml');
}

/**
 * A missing file is only fine when nobody asked for it: a path passed in, or named by
 * $MINT_SSH_EXEC_CONFIG, that does not exist is almost certainly a typo.
 */
export async function loadProfiles(path?: string): Promise<Record<string, HostProfile>> {
  const file = path ?? defaultProfilesPath();
  const namedBy = path !== undefined ? undefined : process.env.MINT_SSH_EXEC_CONFIG ? '$MINT_SSH_EXEC_CONFIG' : null;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    if (missing && namedBy === null) return {};
    const from = namedBy ? ` (named by ${namedBy})` : '';
    throw new ConfigError(
      missing
        ? `${file}: host profiles file not found${from}`
        : `${file}: cannot read host profiles${from}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return parseProfiles(text, file);
}

export function parseProfiles(text: string, file: string): Record<string, HostProfile> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const where = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset);
    return `${file}:${line}:${col}`;
  };

  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${where(e.pos[0])}: invalid YAML: ${e.message}`).join('\n'));
  }

  let data: unknown;
  try {
    data = doc.toJS();
  } catch (error) {
    // e.g. yaml's guard against alias bombs
    throw new ConfigError(`${file}: ${(error as Error).message}`, { cause: error });
  }
  if (data === null || data === undefined) return {};
  if (!isRecord(data) || !('hosts' in data)) {
    throw new ConfigError(
      `${where(nodeStart(doc.contents))}: expected a mapping with a "hosts" key ` +
        `("hosts:" followed by one entry per profile), got ${describe(data)}`,
    );
  }
  // `hosts:` with every profile commented out means "no profiles", not a mistake.
  if (data.hosts === null) data = { ...data, hosts: {} };

  const result = ProfilesFileSchema.safeParse(data, { error: expectation });
  if (result.success) return result.data.hosts;

  const problems = result.error.issues
    .flatMap((issue) => explain(issue, [], data))
    .map((p) => ({ ...p, offset: locate(doc, p.path, p.atKey) }))
    .sort((a, b) => a.offset - b.offset);
  throw new ConfigError(
    problems.map((p) => `${where(p.offset)}: ${p.path.length > 0 ? `${dotted(p.path)}: ` : ''}${p.text}`).join('\n'),
    { cause: result.error },
  );
}

interface Problem {
  path: Path;
  /** Point at the key itself (unknown or badly named keys) rather than its value. */
  atKey: boolean;
  text: string;
}

function explain(issue: Issue, prefix: Path, data: unknown): Problem[] {
  const path = [...prefix, ...issue.path];
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({
        path: [...path, key],
        atKey: true,
        text: `unknown field${suggest(key, knownKeysAt(path))}`,
      }));
    case 'invalid_key':
      return [
        {
          path,
          atKey: true,
          text: `invalid name: expected ${issue.issues[0]?.message ?? 'a valid name'}, got ${describe(path.at(-1))}`,
        },
      ];
    case 'invalid_union': {
      // Zod reports "matched no option"; if only one option had the right shape (a list, say), its
      // own complaint ("item 2 is not a string") is the useful one.
      const sameShape = issue.errors.filter((errs) => !errs.some((e) => e.code === 'invalid_type' && e.path.length === 0));
      const [only] = sameShape;
      if (sameShape.length === 1 && only) return only.flatMap((e) => explain(e, path, data));
      break;
    }
  }
  return [{ path, atKey: false, text: `expected ${issue.message}, got ${describe(valueAt(data, path))}` }];
}

/**
 * Fallback wording for fields that carry no phrase of their own in the schema. Each result
 * completes the sentence "expected …".
 */
function expectation(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      return TYPE_NAMES[issue.expected] ?? `a ${issue.expected}`;
    case 'too_small':
      return bound(issue.origin, issue.inclusive ? 'at least' : 'more than', issue.minimum);
    case 'too_big':
      return bound(issue.origin, issue.inclusive ? 'at most' : 'less than', issue.maximum);
    case 'invalid_value':
      return orList(issue.values.map((v) => JSON.stringify(v)));
    case 'invalid_format':
      return issue.format === 'regex' ? `text matching ${issue.pattern}` : `a valid ${issue.format}`;
    case 'not_multiple_of':
      return `a multiple of ${issue.divisor}`;
    case 'invalid_union':
      return 'one of the allowed forms';
    default:
      return undefined;
  }
}

const TYPE_NAMES: Record<string, string> = {
  string: 'text',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  record: 'a mapping',
};

function bound(origin: string, relation: string, limit: number | bigint): string {
  switch (origin) {
    case 'string':
      return limit === 1 && relation === 'at least' ? 'non-empty text' : `text ${relation} ${limit} characters long`;
    case 'array':
      return `a list with ${relation} ${limit} ${limit === 1 ? 'item' : 'items'}`;
    case 'int':
      return `an integer ${relation} ${limit}`;
    default:
      return `a number ${relation} ${limit}`;
  }
}

function orList(items: string[]): string {
  if (items.length <= 2) return items.join(' or ');
  return `one of ${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') {
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  }
  return String(value);
}

function dotted(path: Path): string {
  return path
    .map((segment, i) => (typeof segment === 'number' ? `[${segment}]` : `${i > 0 ? '.' : ''}${String(segment)}`))
    .join('');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function valueAt(data: unknown, path: Path): unknown {
  let current = data;
  for (const segment of path) {
    if (!isRecord(current) && !Array.isArray(current)) return undefined;
    current = (current as Record<PropertyKey, unknown>)[segment];
  }
  return current;
}

/**
 * Offset of the node at `path`, or of its nearest existing ancestor (a value reached through an
 * alias has no node of its own). Walks the tree by hand rather than with `doc.getIn`, which
 * returns values only (no keys) and compares keys strictly, so a profile named `8080:` (a number
 * to YAML) would not be found under the string "8080" that zod reports.
 */
function locate(doc: Document, path: Path, atKey: boolean): number {
  let node: unknown = doc.contents;
  let offset = nodeStart(node);
  for (const [i, segment] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) break;
      // An empty value (`port:`) sits after the colon; the key is the more useful place to point.
      const emptyValue = isScalar(pair.value) && pair.value.range?.[0] === pair.value.range?.[1];
      node = (atKey && i === path.length - 1) || emptyValue ? pair.key : pair.value;
    } else if (isSeq(node)) {
      node = node.items[Number(segment)];
    } else {
      break;
    }
    if (!hasRange(node)) break;
    offset = node.range[0];
  }
  return offset;
}

function hasRange(node: unknown): node is { range: [number, number, number] } {
  return isRecord(node) && Array.isArray(node.range);
}

function nodeStart(node: unknown): number {
  return hasRange(node) ? node.range[0] : 0;
}

/** Field names the object schema at `path` accepts, for "did you mean". */
function knownKeysAt(path: Path): string[] {
  let schema: z.ZodType | undefined = ProfilesFileSchema;
  for (const segment of [...path, null]) {
    while (schema instanceof z.ZodOptional) schema = schema.unwrap() as z.ZodType;
    if (segment === null) break;
    if (schema instanceof z.ZodObject) schema = (schema.shape as Record<string, z.ZodType>)[String(segment)];
    else if (schema instanceof z.ZodRecord) schema = schema.valueType as z.ZodType;
    else return [];
  }
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

function suggest(key: string, known: string[]): string {
  // Catches IdentityFile, identity_file and small typos alike.
  const normal = (s: string) => s.toLowerCase().replace(/[-_\s]/g, '');
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const distance = editDistance(normal(key), normal(name));
    if (!best || distance < best.distance) best = { name, distance };
  }
  if (best && best.distance <= Math.min(2, Math.floor(normal(key).length / 3))) {
    return ` (did you mean "${best.name}"?)`;
  }
  return known.length > 0 ? `; known fields: ${known.join(', ')}` : '';
}

/** Optimal string alignment distance: swapping two neighbours ("prot" for "port") is one edit. */
function editDistance(a: string, b: string): number {
  const width = b.length + 1;
  const d: number[] = [];
  const at = (i: number, j: number) => d[i * width + j] ?? Number.POSITIVE_INFINITY;
  for (let i = 0; i <= a.length; i++) {
    for (let j = 0; j <= b.length; j++) {
      if (i === 0 || j === 0) {
        d.push(i + j);
        continue;
      }
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1);
      d.push(best);
    }
  }
  return at(a.length, b.length);
}
