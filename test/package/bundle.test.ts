/**
 * The fast-start form of the package (scripts/bundle.mjs, dist/bundle/): what `import('mint-ssh-exec')`
 * and both bins load. Fresh `node` processes, as a MInt module runs one per job: the entries load
 * the one bundle (not ~380 files through the ESM loader), every name of the tsc-built entries is
 * there, ssh2's native bindings still load, and the V8 code cache is used only when it is safe:
 * the user's own dir and file, rejected caches rewritten, concurrent writers leaving a whole file.
 * Needs a current build (npm run build), like the other tests that use dist/.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync, renameSync, rmSync, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');
const LOADER = join(ROOT, 'dist', 'bundle', 'load.cjs');

/** Imports the package in a fresh node and prints JSON: the loader's status plus `extra`'s value. */
function child(env: Record<string, string>, extra = 'null'): string[] {
  const code = `import { createRequire } from 'node:module';
const m = await import('mint-ssh-exec');
const status = createRequire(import.meta.url)(${JSON.stringify(LOADER)}).status;
console.log(JSON.stringify({ cache: status.cache, file: status.file, names: Object.keys(m).length, extra: await (${extra}) }));`;
  return ['--input-type=module', '-e', code];
}

function runChild(env: Record<string, string>, extra?: string): { cache: string; file: string; names: number; extra: unknown } {
  const out = execFileSync(process.execPath, child(env, extra), { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!);
}

describe('the bundle a fresh process loads', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mint-bundle-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('import("mint-ssh-exec") resolves a handful of files through the ESM loader, not the ~380 of dist/', () => {
    // A resolve hook (it runs off-thread) writes every file: URL it resolves to stderr.
    const hooks = join(dir, 'hooks.mjs');
    writeFileSync(hooks, `import { writeSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (r.url.startsWith('file:')) writeSync(2, 'RESOLVED ' + r.url + '\\n');
  return r;
}`);
    const register = `import { register } from 'node:module'; register(${JSON.stringify(`file://${hooks}`)});`;
    const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, '--input-type=module', '-e', "await import('mint-ssh-exec')"], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, MINT_SSH_EXEC_CODE_CACHE: '0' },
    });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('RESOLVED '));
    expect(lines.some((l) => l.endsWith('/dist/bundle/index.mjs'))).toBe(true);
    expect(lines.length).toBeLessThanOrEqual(5);
  });

  it('every entry has the names of its tsc-built twin, and shares one copy of each class', async () => {
    for (const [entry, dist] of [
      ['mint-ssh-exec', 'dist/index.js'],
      ['mint-ssh-exec/sandbox', 'dist/sandbox/index.js'],
      ['mint-ssh-exec/site', 'dist/site/index.js'],
      ['mint-ssh-exec/cli', 'dist/cli/index.js'],
    ] as const) {
      const names = runChild({ MINT_SSH_EXEC_CODE_CACHE: '0' }, `import(${JSON.stringify(entry)}).then((e) => Object.keys(e).sort())`).extra;
      const twin = Object.keys(await import(join(ROOT, dist))).sort();
      expect(names, entry).toEqual(twin);
    }
    // The sandbox entry's SAMPLE_PROGRAM and the core's classes come from the same evaluation of the bundle.
    const same = runChild(
      { MINT_SSH_EXEC_CODE_CACHE: '0' },
      "Promise.all([import('mint-ssh-exec'), import('mint-ssh-exec/site'), import('mint-ssh-exec/sandbox')]).then(([a, b, c]) => typeof a.InputError === 'function' && b.GATEWAY_SCRIPT.endsWith('src/assets/mint-gateway.sh') && c.SAMPLE_PROGRAM.endsWith('.sh'))",
    );
    expect(same.extra).toBe(true);
  });

  it("loads ssh2's native crypto and cpu-features from the installed ssh2", () => {
    const maps = runChild(
      { MINT_SSH_EXEC_CODE_CACHE: '0' },
      "import('node:fs').then((fs) => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith('.node')).map((l) => l.split('/').pop()))",
    ).extra as string[];
    expect(new Set(maps)).toEqual(new Set(['sshcrypto.node', 'cpufeatures.node']));
  });

  it('writes the code cache into a 0700 dir of its own, then uses it; a rejected cache is rewritten', () => {
    const cache = join(dir, 'xdg1');
    const env = { XDG_CACHE_HOME: cache };
    const first = runChild(env);
    expect(first.cache).toBe('missing');
    const [file, ...more] = cacheFiles(cache);
    expect(more).toEqual([]);
    expect(file).toBe(first.file);
    expect(statSync(join(cache, 'mint-ssh-exec')).mode & 0o777).toBe(0o700);
    expect(statSync(file!).mode & 0o777).toBe(0o600);
    expect(runChild(env).cache).toBe('accepted');

    // Bytes V8 will not take (a torn or foreign file): rejected, deleted, written again.
    writeFileSync(file!, Buffer.alloc(4096, 7), { mode: 0o600 });
    expect(runChild(env).cache).toBe('rejected');
    expect(cacheFiles(cache).map((f) => statSync(f).size)).not.toContain(4096);
    expect(runChild(env).cache).toBe('accepted');
    expect(readdirSync(join(cache, 'mint-ssh-exec')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('keeps the cache made right after loading: a process that goes on to work does not rewrite it', () => {
    const cache = join(dir, 'xdg5');
    const env = { XDG_CACHE_HOME: cache };
    const worker = 'new Promise((r) => setTimeout(r, 600)).then(() => "worked")';
    expect(runChild(env, worker).cache).toBe('missing');
    const [file, ...more] = cacheFiles(cache);
    expect(more).toEqual([]);
    const mtime = statSync(file!).mtimeMs;
    expect(runChild(env, worker).cache).toBe('accepted');
    expect(statSync(file!).mtimeMs).toBe(mtime);
  });

  it('ignores a cache others could have written: a group/world-writable dir or file, or a symlink', () => {
    const cache = join(dir, 'xdg2');
    const env = { XDG_CACHE_HOME: cache };
    runChild(env);
    const [file] = cacheFiles(cache) as [string];
    expect(runChild(env).cache).toBe('accepted');

    chmodSync(join(cache, 'mint-ssh-exec'), 0o777);
    expect(runChild(env).cache).toBe('missing');
    chmodSync(join(cache, 'mint-ssh-exec'), 0o700);

    chmodSync(file, 0o666);
    expect(runChild(env).cache).toBe('missing');
    chmodSync(file, 0o600);

    renameSync(file, `${file}.real`);
    symlinkSync(`${file}.real`, file);
    expect(runChild(env).cache).toBe('missing');
    rmSync(file);
    renameSync(`${file}.real`, file);
    expect(runChild(env).cache).toBe('accepted');
  });

  it('works without a usable cache dir, and not at all with MINT_SSH_EXEC_CODE_CACHE=0', () => {
    const nowhere = runChild({ XDG_CACHE_HOME: '/proc/self/no-such-dir' });
    expect(nowhere.cache).toBe('missing');
    expect(nowhere.names).toBeGreaterThan(10);
    const cache = join(dir, 'xdg3');
    expect(runChild({ XDG_CACHE_HOME: cache, MINT_SSH_EXEC_CODE_CACHE: '0' }).cache).toBe('off');
    expect(existsSync(join(cache, 'mint-ssh-exec'))).toBe(false);
  });

  it('concurrent first runs leave one whole cache file that the next run accepts', async () => {
    const cache = join(dir, 'xdg4');
    mkdirSync(cache);
    const env = { ...process.env, XDG_CACHE_HOME: cache };
    const runs = await Promise.all(Array.from({ length: 6 }, () => promisify(execFile)(process.execPath, child({}), { cwd: ROOT, env })));
    // Started together, each finds no cache, or one that a quicker sibling already wrote whole:
    // never a torn one.
    const seen = runs.map((r) => JSON.parse(r.stdout).cache as string);
    expect(seen.every((c) => c === 'missing' || c === 'accepted'), seen.join()).toBe(true);
    expect(seen).toContain('missing');
    const files = readdirSync(join(cache, 'mint-ssh-exec'));
    expect(cacheFiles(cache)).toHaveLength(1);
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(runChild({ XDG_CACHE_HOME: cache }).cache).toBe('accepted');
  });
});

/** The cache files in XDG_CACHE_HOME=cache. */
function cacheFiles(cache: string): string[] {
  const d = join(cache, 'mint-ssh-exec');
  return existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.v8cache')).map((f) => join(d, f)) : [];
}
