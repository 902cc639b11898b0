/**
 * What our rsync may ask the remote side for. An upload: the gateway builds the real rsync server
 * argv from its own template; here we check that the local rsync asked for exactly that template (so
 * both ends agree on the protocol) and pick out the one thing the gateway takes from us: the
 * capability string. A download: rsync's daemon mode over the channel (`rsync -e SHIM mint::work/`
 * starts `rsync --server --daemon .`); the gateway runs that with its own config, and our options
 * travel inside rsync's daemon protocol, where the gateway's module refuses the dangerous ones.
 */

export type Direction = 'put' | 'get';

/** Client-side options; the server flags they produce must equal the gateway's template. */
export const RSYNC_CLIENT_OPTIONS: Record<Direction, readonly string[]> = {
  // -L: MInt hands modules symlinks; send what they point to. --partial: a dropped upload resumes.
  put: ['-rtLE', '--partial'],
  // -l with --safe-links: symlinks the program left come back as symlinks when they stay inside the
  // job, as MInt's `rsync -av` brings them; one that points outside (or up out of) the job is never
  // made here, and --info=name names it (`ignoring unsafe symlink "P" -> "T"`), for result.skipped;
  // name2, not name: unchanged files are named too (result.files lists the whole output, see rsync.ts).
  // -p: outputs keep the modes the program gave them, as MInt's own `rsync -av` keeps them (a 0644
  // output arrived as 0600, directories 0700); --chmod=ug-s (local only): never a set-id bit.
  // --partial-dir (local only): an interrupted download resumes, and no half file has a real name.
  get: ['-rtplE', '--safe-links', '--info=name2', '--chmod=ug-s', '--partial-dir=.mint-partial'],
};

// What the upload's client options turn into on the server side (rsync sends -E only to a
// receiving server, and --log-format=X because --out-format asks for file names).
const SERVER_FLAGS: ReadonlySet<string> = new Set(['t', 'E', 'r']);
const SERVER_REST: readonly string[] = ['--log-format=X', '--partial', '.'];

export type ServerArgsCheck = { ok: true; caps: string } | { ok: false; reason: string };

/** The module the gateway's download daemon serves (the job's staging tree). */
export const DOWNLOAD_MODULE = 'work';

/**
 * argv as rsync hands it to its remote shell: `HOST rsync --server -FLAGSeCAPS ... . PATH` for an
 * upload, `HOST rsync --server --daemon .` for a download (caps '': they travel in the greeting).
 */
export function checkServerArgs(argv: readonly string[], direction: Direction): ServerArgsCheck {
  const args = [...argv];
  if (args[0] === '-l') args.splice(0, 2);
  args.shift(); // the host placeholder
  if (direction === 'get') {
    const expected = ['rsync', '--server', '--daemon', '.'];
    if (args.length !== expected.length || args.some((word, i) => word !== expected[i])) {
      return { ok: false, reason: `expected "${expected.join(' ')}" (a download runs rsync's daemon mode) in ${JSON.stringify(argv)}` };
    }
    return { ok: true, caps: '' };
  }
  const expectedHead = ['rsync', '--server'];
  for (const word of expectedHead) {
    if (args.shift() !== word) return { ok: false, reason: `expected "${expectedHead.join(' ')}" in ${JSON.stringify(argv)}` };
  }
  const flags = args.shift() ?? '';
  const m = /^-([A-Za-z]*?)e(\d*\.[A-Za-z]*)$/.exec(flags);
  if (!m) return { ok: false, reason: `no capability string in rsync server flags ${JSON.stringify(flags)} (rsync >= 3.0 is required)` };
  const letters = new Set(m[1]!.split(''));
  const expectedFlags = SERVER_FLAGS;
  if (letters.size !== expectedFlags.size || [...letters].some((l) => !expectedFlags.has(l))) {
    return { ok: false, reason: `rsync server flags ${JSON.stringify(flags)} differ from the gateway template -${[...expectedFlags].join('')}` };
  }
  const rest = args.slice(0, -1);
  const expectedRest = SERVER_REST;
  if (rest.length !== expectedRest.length || rest.some((word, i) => word !== expectedRest[i])) {
    return { ok: false, reason: `unexpected rsync server options ${JSON.stringify(rest)}` };
  }
  return { ok: true, caps: m[2]! };
}
