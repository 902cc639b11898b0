/**
 * The code's layout follows a job's life, and its dependencies point one way:
 *   base (errors.ts, assets/) <- config <- connection <- transfer <- gateway <- pull <- job <- probe <- cli
 *   pull <- hub, agent (pull mode's two ends, issue 18; beside job, neither importing the other)
 *   config <- site <- sandbox;  everything <- index.ts (the entry)
 * Each import from one folder of src/ into another must go to a folder of a lower rank; then no
 * folder cycle can exist (checked on its own too, so a rank table edited wrongly still fails), and
 * only connection/ may import ssh2.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '..', 'src');

const RANK: Record<string, number> = {
  base: 0,
  assets: 0,
  config: 1,
  connection: 2,
  site: 2,
  transfer: 3,
  sandbox: 3,
  gateway: 4,
  pull: 5,
  job: 6,
  hub: 6,
  agent: 6,
  probe: 7,
  cli: 8,
  index: 9,
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : /\.(ts|mjs)$/.test(name) ? [path] : [];
  });
}

/** The folder a file belongs to: its first folder below src/, or `index` / `base` for files in src/ itself. */
function unit(path: string): string {
  const rel = relative(SRC, path);
  if (!rel.includes('/')) return rel === 'index.ts' ? 'index' : 'base';
  return rel.split('/')[0]!;
}

interface Edge {
  from: string;
  to: string;
  file: string;
}

function graph(): { edges: Edge[]; ssh2: string[] } {
  const edges: Edge[] = [];
  const ssh2: string[] = [];
  for (const file of files(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?['"]([^'"]+)['"]/g)) {
      const spec = m[1]!;
      if (spec === 'ssh2' || spec.startsWith('ssh2/')) ssh2.push(relative(SRC, file));
      if (!spec.startsWith('.')) continue;
      const to = unit(resolve(dirname(file), spec));
      const from = unit(file);
      if (from !== to) edges.push({ from, to, file: relative(SRC, file) });
    }
    for (const m of text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      if (m[1] === 'ssh2') ssh2.push(relative(SRC, file));
    }
  }
  return { edges, ssh2 };
}

describe('layout of src/', () => {
  const { edges, ssh2 } = graph();

  it('every folder has a rank', () => {
    const units = new Set(files(SRC).map(unit));
    expect([...units].filter((u) => RANK[u] === undefined)).toEqual([]);
  });

  it('every import between folders points to a lower rank', () => {
    const upward = edges.filter((e) => RANK[e.to]! >= RANK[e.from]!).map((e) => `${e.file}: ${e.from} -> ${e.to}`);
    expect(upward).toEqual([]);
  });

  it('has no folder cycle', () => {
    const next = new Map<string, Set<string>>();
    for (const e of edges) next.set(e.from, (next.get(e.from) ?? new Set()).add(e.to));
    const cycles: string[] = [];
    const visit = (node: string, path: string[]): void => {
      if (path.includes(node)) {
        cycles.push([...path.slice(path.indexOf(node)), node].join(' -> '));
        return;
      }
      for (const n of next.get(node) ?? []) visit(n, [...path, node]);
    };
    for (const node of next.keys()) visit(node, []);
    expect(cycles).toEqual([]);
  });

  it('only connection/ imports ssh2', () => {
    expect(ssh2.filter((f) => !f.startsWith('connection/'))).toEqual([]);
    expect(ssh2.length).toBeGreaterThan(0);
  });
});
