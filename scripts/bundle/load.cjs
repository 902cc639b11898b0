'use strict';
// Loads dist/bundle/mint.cjs (the whole package and its dependencies in one CommonJS file, built by
// scripts/bundle.mjs) with a V8 code cache, so that a fresh process does not parse and compile
// ~2 MB of JavaScript again on every start. Why: a MInt module runs a fresh `node` per job, and
// `import('mint-ssh-exec')` through Node's ESM loader cost ~330 ms over a bare node start (~380
// files); the bundle alone ~160 ms, the bundle with a code cache ~70 (issue 16,
// docs/perf-findings in the shared reference). Node 20 has no module.enableCompileCache, hence
// vm.Script's cachedData here.
//
// Safety of the cache (it is compiled code, so whoever can write it can run code in this process):
// - it lives in the user's own cache dir ($XDG_CACHE_HOME or ~/.cache)/mint-ssh-exec, created 0700,
//   and is used only when that dir and the file belong to this user and no one else may write them;
//   never inside node_modules (which may be read-only or shared);
// - its name carries a SHA-256 of the bundle's text and the Node/V8 version and arch: V8 checks a
//   cache against the source's length only, not its content, so a stale cache of a rebuilt bundle
//   of the same length must never be offered;
// - a cache V8 rejects (cachedDataRejected) is deleted and written again;
// - it is made right after the bundle's top level has run (see load() for why not later);
// - it is written to a temporary file in the same dir and renamed into place, so concurrent
//   processes each see a whole old file or a whole new one, never a torn one;
// - any failure (read-only home, no HOME, a foreign owner) means no cache, never an error.
// MINT_SSH_EXEC_CODE_CACHE=0 turns it off.
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const { createRequire } = require('node:module');
const os = require('node:os');
const path = require('node:path');
const vm = require('node:vm');

const BUNDLE = path.join(__dirname, 'mint.cjs');

function cacheDir() {
  const base = process.env.XDG_CACHE_HOME && path.isAbsolute(process.env.XDG_CACHE_HOME) ? process.env.XDG_CACHE_HOME : path.join(os.homedir(), '.cache');
  return path.join(base, 'mint-ssh-exec');
}

/** True if path is ours alone: owned by this user, writable by no one else (and a dir if dir). */
function ownedByMe(stat, dir) {
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  return stat.uid === uid && (stat.mode & 0o022) === 0 && (dir ? stat.isDirectory() : stat.isFile());
}

/** The cache dir if it is safe to use, creating it if missing; undefined otherwise. */
function safeDir(create) {
  const dir = cacheDir();
  try {
    // Two plain mkdirs, not { recursive: true }: Node's recursive mkdir never returns under /proc
    // (XDG_CACHE_HOME=/proc/self/x hung the process, seen in test/package/bundle.test.ts).
    if (create) for (const d of [path.dirname(dir), dir]) if (!fs.existsSync(d)) fs.mkdirSync(d, { mode: 0o700 });
    return ownedByMe(fs.lstatSync(dir), true) ? dir : undefined;
  } catch {
    return undefined;
  }
}

function readCache(file) {
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      if (!ownedByMe(fs.fstatSync(fd), false)) return undefined;
      return fs.readFileSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

const MONTH_MS = 30 * 24 * 3600 * 1000;

function writeCache(dir, file, data) {
  // Caches of other builds (an upgrade, another project's copy) are dropped after a month unwritten:
  // a build still in use just writes its own again.
  try {
    for (const old of fs.readdirSync(dir)) {
      const p = path.join(dir, old);
      if (/^mint-[0-9a-f]{32}\.v8cache$/.test(old) && Date.now() - fs.lstatSync(p).mtimeMs > MONTH_MS) fs.unlinkSync(p);
    }
  } catch {}
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    fs.writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
    fs.renameSync(tmp, file);
  } catch {
    try {
      fs.unlinkSync(tmp);
    } catch {}
  }
}

let loaded;
/** What happened to the code cache in this process (off, missing, rejected, accepted), for the tests. */
const status = { cache: 'off', file: undefined };

/** The bundle's exports: { index, sandbox, site, cli, bin } (see scripts/bundle.mjs). */
function load() {
  if (loaded) return loaded;
  const source = fs.readFileSync(BUNDLE, 'utf8');
  const enabled = process.env.MINT_SSH_EXEC_CODE_CACHE !== '0' && typeof process.getuid === 'function';
  const key = createHash('sha256').update(source).update(`\0${process.version}\0${process.versions.v8}\0${process.arch}`).digest('hex').slice(0, 32);
  const name = `mint-${key}.v8cache`;
  const dir = enabled ? safeDir(false) : undefined;
  const cachedData = dir ? readCache(path.join(dir, name)) : undefined;
  // The same wrapper Node's CommonJS loader uses, so the bundle sees the usual module variables.
  const wrapper = `(function (exports, require, module, __filename, __dirname) { ${source}\n})`;
  // The Docker sandbox's import('testcontainers') goes to Node's own loader, as it would from a file.
  const importModuleDynamically = vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  const script = new vm.Script(wrapper, { filename: BUNDLE, cachedData, importModuleDynamically });
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, createRequire(BUNDLE), mod, BUNDLE, __dirname);
  loaded = mod.exports;
  status.cache = !enabled ? 'off' : !cachedData ? 'missing' : script.cachedDataRejected ? 'rejected' : 'accepted';
  status.file = path.join(cacheDir(), name);
  if (status.cache === 'off' || status.cache === 'accepted') return loaded;
  if (status.cache === 'rejected') {
    try {
      fs.unlinkSync(status.file);
    } catch {}
  }
  // Made now, right after the bundle's top level ran, not at exit: a cache made after a job (with
  // the connect, transfer and job functions compiled in it) was slower to load than compiling those
  // lazily. Fresh-process job, 9 interleaved rounds: 902 ms with this cache, 935 with the one made
  // after a job, 985 with none; import alone 86 / 166 / 150 ms over a bare node (15 rounds).
  try {
    const data = script.createCachedData();
    const target = safeDir(true);
    if (target) writeCache(target, path.join(target, name), data);
  } catch {}
  return loaded;
}

module.exports = { load, status, BUNDLE };
