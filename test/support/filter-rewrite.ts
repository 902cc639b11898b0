/**
 * A hand-made rsync peer for test/gateway/export-escape.test.ts: an rsync --rsh program that runs one
 * gateway download verb through OpenSSH and REWRITES the filter list the stock rsync client sends to
 * the gateway's rsync sender, replacing one marker rule with a bare `!` (clear the list) or with a
 * one-off merge rule. A stock client never puts either on the wire (it clears its own list locally,
 * and reads a merge file itself), so the client is run with `--exclude=MARKER` and this relay swaps
 * that rule's frame.
 *
 * rsync calls it as `RELAY [-l USER] HOST rsync --server --daemon .` (the client names h::work/:
 * downloads are rsync's daemon mode). It ignores that command, runs `mint-gw $MGW_VERB $MGW_JOB`
 * through OpenSSH to the sandbox, and relays rsync's streams:
 *   server -> client: copied unchanged;
 *   server stderr:    copied to rsync's stderr; for `take`, once the gateway prints its
 *                     `mint-gw: sent:` line the relay ends the gateway's stdin without an answer
 *                     (so the job is kept, as on a dropped connection);
 *   client -> server: the daemon greeting (`@RSYNCD: ...` and the module line), the client's
 *       options (NUL-separated), the negotiation strings, and then, multiplexed, the filter list
 *       (exclude.c send_filter_list): a MSG_DATA frame whose header is an int32 LE ((MPLEX_BASE 7 +
 *       MSG_DATA 0) << 24) + payload length, the payload starting with per rule an int32 LE length
 *       and the rule text (`- PATTERN` for --exclude since protocol 29), ended by an int32 0. The
 *       relay forwards everything as it comes (holding back only a tail that may begin the rule), until it sees
 *       the marker rule `- $MGW_MARKER` framed that way (length prefix, and the frame header 8 bytes
 *       before it); it replaces that rule with $MGW_REWRITE_TO (default `!`), fixes the header's
 *       length, and from then on copies everything unchanged. The server parses the new rule with
 *       recv_filter_list -> parse_filter_str: `!` (FILTRULE_CLEAR_LIST) empties the whole list, a
 *       `merge FILE` makes the server open FILE (exclude.c parse_merge_name, parse_filter_file).
 *
 * Environment:
 *   MGW_VERB         get | take
 *   MGW_JOB          the job id
 *   MGW_MARKER       the pattern of the client's marker rule (pass `--exclude=MARKER` to rsync)
 *   MGW_REWRITE      `0`: only find the marker frame and forward it unchanged (a control run);
 *                    anything else: rewrite it
 *   MGW_REWRITE_TO   the rule the marker becomes (default `!`), e.g. `merge,- /home/u/.netrc`
 *   MGW_REWRITE_LOG  where the relay writes its report as JSON (FilterRewriteReport) when it ends
 *
 * The relay fails loudly: if it never found the marker frame (or, with rewriting on, did not rewrite
 * it), or the stream did not have the layout above, it writes `filter-rewrite relay: FAILED: ...` on
 * stderr, records the reason in the report and exits 97 (whatever the gateway's status was). rsync's
 * own exit status may not show this (the client can exit before its remote shell does), so tests
 * must read the report.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Sandbox } from '../../src/sandbox/sandbox.js';
import { sshOptions } from './hostile-helpers.js';

/** What the relay did, as it writes it to $MGW_REWRITE_LOG. */
export interface FilterRewriteReport {
  verb: string;
  /** False when MGW_REWRITE=0 (observe only). */
  rewrite: boolean;
  /** The rule the marker becomes. */
  rewriteTo: string;
  /** The client's filter rules as they crossed the wire (before any rewrite). */
  rules: string[];
  /** The marker rule's frame was found in the first MSG_DATA frame. */
  found: boolean;
  /** It was replaced by `!`. */
  rewritten: boolean;
  /** The first MSG_DATA frame (header + payload) as received and as forwarded, in hex. */
  frameBefore: string | null;
  frameAfter: string | null;
  /** Why the relay failed, or null. */
  error: string | null;
  /** The gateway session's exit status (OpenSSH's), or null when it was killed. */
  exitCode: number | null;
}

/** The relay's exit status when it failed (never found / never rewrote the marker frame). */
export const RELAY_FAILED_EXIT = 97;

/** Writes the relay (see the header) into `dir` and returns its path. */
export async function writeFilterRewritingRsh(sandbox: Sandbox, dir: string): Promise<string> {
  const path = join(dir, 'filter-rewrite-rsh.mjs');
  const ssh = ['ssh', ...sshOptions(sandbox), '-p', String(sandbox.port), `${sandbox.user}@127.0.0.1`];
  await writeFile(path, `#!${process.execPath}\nconst SSH = ${JSON.stringify(ssh)};\n${RELAY}`);
  await chmod(path, 0o755);
  return path;
}

/** Reads the report the relay wrote (throws when there is none: the relay did not run or died). */
export async function readRewriteReport(path: string): Promise<FilterRewriteReport> {
  return JSON.parse(await readFile(path, 'utf8')) as FilterRewriteReport;
}

// The relay's body (plain JavaScript, no template substitutions below this line).
const RELAY = String.raw`// rsync --rsh relay that rewrites the client's filter list: see test/support/filter-rewrite.ts.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';

const MSG_DATA_TAG = 7; // MPLEX_BASE (7) + MSG_DATA (0), the top byte of a multiplex header
const env = process.env;
const verb = env.MGW_VERB;
const job = env.MGW_JOB;
const marker = env.MGW_MARKER;
const logPath = env.MGW_REWRITE_LOG;
const report = {
  verb: verb ?? null, rewrite: env.MGW_REWRITE !== '0', rewriteTo: env.MGW_REWRITE_TO || '!', rules: [], found: false, rewritten: false, frameBefore: null, frameAfter: null, error: null, exitCode: null,
};
const finish = (code) => {
  if (!report.error && !report.found) report.error = 'never saw the client\'s filter rule "- ' + marker + '"';
  if (!report.error && report.rewrite && !report.rewritten) report.error = 'found the marker frame but did not rewrite it';
  try { if (logPath) writeFileSync(logPath, JSON.stringify(report, null, 2) + '\n'); } catch {}
  if (report.error) {
    process.stderr.write('filter-rewrite relay: FAILED: ' + report.error + '\n');
    process.exit(97);
  }
  process.exit(code);
};
if (!verb || !job || !marker || !logPath) {
  report.error = 'MGW_VERB, MGW_JOB, MGW_MARKER and MGW_REWRITE_LOG must be set';
  finish(97);
}
// rsync's daemon mode: rsync asked for \`rsync --server --daemon .\`; the gateway takes no caps.
const rewriteTo = report.rewriteTo;
const child = spawn(SSH[0], [...SSH.slice(1), 'mint-gw ' + verb + ' ' + job], { stdio: ['pipe', 'pipe', 'pipe'] });
child.on('error', (e) => {
  report.error = report.error ?? 'cannot run ssh: ' + e.message;
});

// server -> client, unchanged.
process.stdout.on('error', () => {});
child.stdout.pipe(process.stdout);

// The gateway's stderr goes to rsync's; take gets no answer (end of input) after its sent line.
let gatewayErr = '';
let toServerEnded = false;
const endToServer = () => {
  if (!toServerEnded) {
    toServerEnded = true;
    child.stdin.end();
  }
};
child.stderr.on('data', (chunk) => {
  process.stderr.write(chunk);
  gatewayErr += chunk.toString('latin1');
  if (verb === 'take' && /^mint-gw: sent: /m.test(gatewayErr)) endToServer();
});
child.stdin.on('error', () => {});

const toServer = (buf) => {
  if (toServerEnded || buf.length === 0) return;
  if (!child.stdin.write(buf)) {
    process.stdin.pause();
    child.stdin.once('drain', () => process.stdin.resume());
  }
};

// client -> server: scanned for the marker rule's frame (see the header).
const wanted = Buffer.from('- ' + marker, 'latin1');
let state = 'scan'; // scan | pass
let held = Buffer.alloc(0);
const giveUp = (why) => {
  report.error = report.error ?? why;
  state = 'pass';
  toServer(held);
  held = Buffer.alloc(0);
};
const int32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n, 0);
  return b;
};

const scan = () => {
  const q = held.indexOf(wanted);
  if (q < 0) {
    // Hold back only what may begin the marker's frame: a tail that is a prefix of the rule, with
    // the 8 bytes before it. Anything else goes on at once (the client waits for the daemon's
    // answers to its greeting and module line). The client writes the frame in one flush, so it
    // arrives whole; if a split ever forwards its header, the relay fails loudly (giveUp).
    let k = Math.min(wanted.length - 1, held.length);
    while (k > 0 && !held.subarray(held.length - k).equals(wanted.subarray(0, k))) k -= 1;
    const keep = k > 0 ? Math.min(held.length, k + 8) : 0;
    toServer(held.subarray(0, held.length - keep));
    held = held.subarray(held.length - keep);
    return;
  }
  // header (4) | rule length (4) | '- MARKER' | ... | int32 0
  const start = q - 8;
  if (start < 0 || held.readInt32LE(q - 4) !== wanted.length) return giveUp('the marker rule is not framed as a filter rule: ' + held.toString('hex'));
  const word = held.readUInt32LE(start);
  const tag = word >>> 24;
  const len = word & 0xffffff;
  if (tag !== MSG_DATA_TAG) return giveUp('the frame holding the filter list has tag ' + tag + ', not MSG_DATA (7)');
  if (held.length < start + 4 + len) return; // the rest of the frame has yet to come
  const payload = held.subarray(start + 4, start + 4 + len);
  report.frameBefore = held.subarray(start, start + 4 + len).toString('hex');
  let pos = 0;
  let hit = null;
  for (;;) {
    if (pos + 4 > payload.length) return giveUp('the filter list runs past its frame');
    const n = payload.readInt32LE(pos);
    if (n === 0) break;
    if (n < 0 || pos + 4 + n > payload.length) return giveUp('a filter rule of ' + n + ' bytes runs past its frame');
    const text = payload.subarray(pos + 4, pos + 4 + n).toString('latin1');
    report.rules.push(text);
    if (text === '- ' + marker && !hit) hit = { pos, n };
    pos += 4 + n;
  }
  report.found = true;
  let out = payload;
  if (report.rewrite) {
    const to = Buffer.from(rewriteTo, 'latin1');
    out = Buffer.concat([payload.subarray(0, hit.pos), int32(to.length), to, payload.subarray(hit.pos + 4 + hit.n)]);
    report.rewritten = true;
  }
  const newHeader = Buffer.alloc(4);
  newHeader.writeUInt32LE(((MSG_DATA_TAG << 24) >>> 0) + out.length, 0);
  const frame = Buffer.concat([newHeader, out]);
  report.frameAfter = frame.toString('hex');
  toServer(held.subarray(0, start));
  toServer(frame);
  const rest = held.subarray(start + 4 + len);
  held = Buffer.alloc(0);
  state = 'pass';
  toServer(rest);
};

process.stdin.on('data', (chunk) => {
  if (state === 'pass') return toServer(chunk);
  held = Buffer.concat([held, chunk]);
  scan();
});
process.stdin.on('end', () => {
  if (state !== 'pass') giveUp('the client\'s input ended before its filter list');
  endToServer();
});

child.on('close', (code) => {
  report.exitCode = code;
  finish(code ?? 255);
});
`;
