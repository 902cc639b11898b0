/**
 * A hand-made rsync peer for the --export escape test (test/gateway/export-escape.test.ts): an rsync
 * --rsh program that runs one gateway download verb through OpenSSH and REWRITES the filter list the
 * stock rsync client sends to the gateway's rsync sender, replacing one marker rule with a bare `!`
 * (clear the list). A stock client never puts `!` on the wire (it clears its own list locally), so
 * the client is run with `--exclude=MARKER` and this relay swaps that rule's frame for `!`.
 *
 * rsync calls it as `RELAY [-l USER] HOST rsync --server --sender -FLAGSeCAPS . PATH`. It ignores
 * that command apart from CAPS (the one thing the real client forwards too), runs
 * `mint-gw $MGW_VERB $MGW_JOB CAPS` through OpenSSH to the sandbox, and relays rsync's streams:
 *   server -> client: copied unchanged (the first 4 bytes, the server's protocol version, are noted);
 *   server stderr:    copied to rsync's stderr; for `take`, once the gateway prints its
 *                     `mint-gw: sent:` line the relay ends the gateway's stdin without an answer
 *                     (so the job is kept, as on a dropped connection);
 *   client -> server: parsed, as rsync 3.x (protocol >= 30) writes it when it is the receiver
 *                     (main.c client_run, compat.c setup_protocol, exclude.c send_filter_list):
 *       int32 LE  the client's protocol version                       (forwarded as it comes)
 *       vstring   the checksum names, only when CAPS holds `v` (negotiated strings; -z would add the
 *                 compression names, which this relay refuses): a length byte (or two bytes, the
 *                 first with 0x80 set, when over 0x7F) and the names          (forwarded)
 *       then io_start_multiplex_out: every byte is now framed. The first frame is a MSG_DATA
 *       header, int32 LE ((MPLEX_BASE 7 + MSG_DATA 0) << 24) + payload length, i.e. tag 7 in the
 *       top byte and the length in the low 24 bits, followed by the payload, which begins with the
 *       filter list: per rule an int32 LE length and the rule text (`- PATTERN` for --exclude since
 *       protocol 29), ended by an int32 0. The client writes header and payload in one flush and
 *       then waits for the server's file list, so the relay holds that frame until it is complete,
 *       replaces the rule `- $MGW_MARKER` (length prefix 2 + marker length) with `!` (length prefix
 *       1), lowers the header's length by the bytes saved, and forwards it; everything after is
 *       copied unchanged. The server parses `!` with recv_filter_list -> parse_filter_str
 *       (FILTRULE_CLEAR_LIST), which empties the whole list, the gateway's argv rules included.
 *
 * Environment:
 *   MGW_VERB         get | take
 *   MGW_JOB          the job id
 *   MGW_MARKER       the pattern of the client's marker rule (pass `--exclude=MARKER` to rsync)
 *   MGW_REWRITE      `0`: only find the marker frame and forward it unchanged (a control run);
 *                    anything else: rewrite it to `!`
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
  /** The capability string taken from rsync's server flags. */
  caps: string;
  clientProtocol: number | null;
  serverProtocol: number | null;
  /** The negotiation strings the client sent before multiplexing (checksum names). */
  vstrings: string[];
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
  verb: verb ?? null, rewrite: env.MGW_REWRITE !== '0', caps: '', clientProtocol: null, serverProtocol: null,
  vstrings: [], rules: [], found: false, rewritten: false, frameBefore: null, frameAfter: null, error: null, exitCode: null,
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
const flags = process.argv.slice(2).find((a) => /^-[A-Za-z]*e[0-9]*\.[A-Za-z]*$/.test(a));
if (!flags) {
  report.error = 'no -FLAGSeCAPS word in the command rsync asked for: ' + process.argv.slice(2).join(' ');
  finish(97);
}
const letters = flags.slice(1, flags.indexOf('e'));
const caps = flags.slice(flags.indexOf('e') + 1);
report.caps = caps;
if (letters.includes('z')) {
  report.error = 'compression (-z) adds a second negotiation string; this relay does not handle it';
  finish(97);
}
let vstringsLeft = caps.includes('v') ? 1 : 0;

const child = spawn(SSH[0], [...SSH.slice(1), 'mint-gw ' + verb + ' ' + job + ' ' + caps], { stdio: ['pipe', 'pipe', 'pipe'] });
child.on('error', (e) => {
  report.error = report.error ?? 'cannot run ssh: ' + e.message;
});

// server -> client, unchanged; its first 4 bytes are the server's protocol version.
let serverHead = Buffer.alloc(0);
child.stdout.on('data', (chunk) => {
  if (serverHead.length < 4) {
    serverHead = Buffer.concat([serverHead, chunk]);
    if (serverHead.length >= 4) report.serverProtocol = serverHead.readInt32LE(0);
  }
});
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

// client -> server, parsed up to the end of the first MSG_DATA frame.
let state = 'version'; // version | vstring | header | pass
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

/**
 * The first MSG_DATA frame: find the marker rule in the filter list at its start. Returns the frame
 * to forward (rewritten unless MGW_REWRITE=0), or null after giveUp (which forwards it unchanged).
 */
const firstFrame = (header, payload) => {
  report.frameBefore = Buffer.concat([header, payload]).toString('hex');
  const wanted = '- ' + marker;
  let pos = 0;
  let hit = null;
  for (;;) {
    if (pos + 4 > payload.length) return giveUp('the filter list runs past the first MSG_DATA frame (' + payload.length + ' bytes)');
    const n = payload.readInt32LE(pos);
    if (n === 0) break;
    if (n < 0 || pos + 4 + n > payload.length) return giveUp('a filter rule of ' + n + ' bytes at ' + pos + ' runs past the first MSG_DATA frame');
    const text = payload.subarray(pos + 4, pos + 4 + n).toString('latin1');
    report.rules.push(text);
    if (text === wanted && !hit) hit = { pos, n };
    pos += 4 + n;
  }
  if (!hit) return giveUp('the client\'s filter list ' + JSON.stringify(report.rules) + ' holds no rule "' + wanted + '"');
  report.found = true;
  let out = payload;
  if (report.rewrite) {
    out = Buffer.concat([payload.subarray(0, hit.pos), int32(1), Buffer.from('!'), payload.subarray(hit.pos + 4 + hit.n)]);
    report.rewritten = true;
  }
  const newHeader = Buffer.alloc(4);
  newHeader.writeUInt32LE(((MSG_DATA_TAG << 24) >>> 0) + out.length, 0);
  const frame = Buffer.concat([newHeader, out]);
  report.frameAfter = frame.toString('hex');
  return frame;
};

const step = () => {
  for (;;) {
    if (state === 'pass') {
      toServer(held);
      held = Buffer.alloc(0);
      return;
    }
    if (state === 'version') {
      if (held.length < 4) return;
      report.clientProtocol = held.readInt32LE(0);
      toServer(held.subarray(0, 4));
      held = held.subarray(4);
      if (report.clientProtocol < 30) return giveUp('protocol ' + report.clientProtocol + ' < 30: the client does not multiplex its filter list');
      state = vstringsLeft > 0 ? 'vstring' : 'header';
    } else if (state === 'vstring') {
      if (held.length < 1) return;
      let headLen = 1;
      let len = held[0];
      if (len & 0x80) {
        if (held.length < 2) return;
        headLen = 2;
        len = (len & 0x7f) * 0x100 + held[1];
      }
      if (held.length < headLen + len) return;
      report.vstrings.push(held.subarray(headLen, headLen + len).toString('latin1'));
      toServer(held.subarray(0, headLen + len));
      held = held.subarray(headLen + len);
      vstringsLeft -= 1;
      if (vstringsLeft === 0) state = 'header';
    } else if (state === 'header') {
      if (held.length < 4) return;
      const word = held.readUInt32LE(0);
      const tag = word >>> 24;
      const len = word & 0xffffff;
      if (tag !== MSG_DATA_TAG) return giveUp('the first frame after the handshake has tag ' + tag + ', not MSG_DATA (7): header ' + held.subarray(0, 4).toString('hex'));
      if (held.length < 4 + len) return;
      const frame = firstFrame(held.subarray(0, 4), held.subarray(4, 4 + len));
      if (!frame) return; // giveUp forwarded everything unchanged
      toServer(frame);
      held = held.subarray(4 + len);
      state = 'pass';
    }
  }
};

process.stdin.on('data', (chunk) => {
  if (state === 'pass') return toServer(chunk);
  held = Buffer.concat([held, chunk]);
  step();
});
process.stdin.on('end', () => {
  if (state !== 'pass') giveUp('the client\'s input ended while the relay was reading its ' + state);
  endToServer();
});

child.on('close', (code) => {
  report.exitCode = code;
  finish(code ?? 255);
});
`;
