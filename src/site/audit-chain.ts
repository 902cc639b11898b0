/**
 * The gateway's audit chain, checked (issue 17, part 4). Every line the gateway writes carries, as
 * its second field, `prev=` and the SHA-256 of the line before it, newline included; the first line
 * of a log chains to the SHA-256 of nothing (what `tail -n 1 | sha256sum` gives on an empty log:
 * mgw_audit_chain). An edited line changes its hash, so the line after it no longer names it; a
 * deleted or inserted line breaks the chain where it was. What the chain alone cannot show is a
 * rewrite of everything from the edit to the end (or the loss of the last lines): that takes a head
 * kept elsewhere, which the client's job record holds (`audit.headAtTake`) and `expectHeads` checks.
 *
 * Lines are read as bytes, streamed (the log grows without bound): never decoded, so the hash is
 * of exactly what is on disk.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';

export const AUDIT_LOG_NAME = '.mint-gateway-audit.log';

/** The chain's start: SHA-256 of the empty string. */
export const AUDIT_GENESIS = createHash('sha256').update('').digest('hex');

export interface AuditProblem {
  /** 1-based line number in the file. */
  line: number;
  message: string;
}

export interface AuditReport {
  file: string;
  ok: boolean;
  /** Lines read (a last line without its newline included). */
  lines: number;
  /** Lines before the first chained one: written by a gateway before the chain (0.3.x). */
  unchained: number;
  /** The hash of the last whole line: what the next line's prev= must be. */
  head: string;
  problems: AuditProblem[];
  /** Each expected head, and the line whose hash it is (undefined: no line of this log). */
  heads: { head: string; line: number | undefined }[];
}

const PREV = /^\S+ prev=([0-9a-f]{64}) /;
const MAX_PROBLEMS = 50;

/** Checks the log at `file` (see the module comment); `expectHeads` are hashes a line must have. */
export async function verifyAuditLog(file: string, expectHeads: readonly string[] = []): Promise<AuditReport> {
  const problems: AuditProblem[] = [];
  const wanted = new Map<string, number | undefined>(expectHeads.map((h) => [h.toLowerCase(), undefined]));
  let expected = AUDIT_GENESIS;
  let lines = 0;
  let unchained = 0;
  let chained = false;
  let carry: Buffer[] = [];
  const problem = (line: number, message: string): void => {
    if (problems.length < MAX_PROBLEMS) problems.push({ line, message });
  };
  const onLine = (bytes: Buffer): void => {
    lines += 1;
    const text = bytes.toString('latin1');
    const m = PREV.exec(text);
    if (!m) {
      if (chained) problem(lines, `line ${lines} has no prev= field: inserted, or edited (every line after the first chained one carries one)`);
      else unchained += 1;
    } else {
      chained = true;
      if (m[1] !== expected) {
        problem(
          lines,
          lines === 1
            ? 'line 1 does not start the chain: lines before it were deleted'
            : `line ${lines} does not follow line ${lines - 1} (its prev= is not line ${lines - 1}'s hash): line ${lines - 1} was edited, or lines between them were deleted or inserted`,
        );
      }
    }
    expected = createHash('sha256').update(bytes).update('\n').digest('hex');
    if (wanted.has(expected)) wanted.set(expected, lines);
  };
  await new Promise<void>((resolve, reject) => {
    const stream = createReadStream(file);
    stream.on('error', reject);
    stream.on('data', (chunk: Buffer | string) => {
      let data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10)) {
        carry.push(data.subarray(0, nl));
        onLine(Buffer.concat(carry));
        carry = [];
        data = data.subarray(nl + 1);
      }
      if (data.length > 0) carry.push(data);
    });
    stream.on('end', () => resolve());
  });
  if (carry.length > 0) {
    lines += 1;
    problem(lines, `line ${lines} has no newline: a write cut short that was not cut back, or an edit`);
  }
  const heads = [...wanted.entries()].map(([head, line]) => ({ head, line }));
  for (const h of heads) if (h.line === undefined) problems.push({ line: lines, message: `no line of this log has the hash ${h.head}: the log was rewritten or cut after that line was written` });
  return { file, ok: problems.length === 0, lines, unchained, head: expected, problems, heads };
}

/** The audit log under a job root. */
export function auditLogOf(root: string): string {
  return join(root, AUDIT_LOG_NAME);
}
