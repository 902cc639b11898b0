/**
 * MInt's solver_execute.log lines, written only when asked (`run --mint-log PATH`, or
 * `--mint-log-site` for MInt's own location under $MISYSTEM_SITEID): MInt sets MISYSTEM_SITEID for
 * every module, and writing on that alone once created a root-owned /home/misystem/... tree. The
 * log's directory must exist: nothing above the log is ever created. Two formats:
 *   workflow  (workflow_lib)  `%Y/%m/%d %H:%M:%S: start|normal end|abnormal end: <solver>: <user id>: <solver uuid>: <run id>: <workflow id>`
 *   template  (the remote-side templates)  `%Y-%m-%d %H:%M:%S: start|normal end|abnormal end: <solver>: unknown`
 */
import { appendFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InputError } from '../errors.js';

export type MintLogEvent = 'start' | 'normal end' | 'abnormal end';
export type MintLogFormat = 'workflow' | 'template';

export interface MintLogFields {
  solver: string;
  userId: string;
  solverUuid: string;
  runId: string;
  workflowId: string;
}

/** The log's path: the explicit one, or MInt's own location when `site` is asked for; else none. */
export function mintLogPath(explicit: string | undefined, site: boolean, env: NodeJS.ProcessEnv): string | undefined {
  if (explicit) return explicit;
  if (!site) return undefined;
  const id = env.MISYSTEM_SITEID;
  if (!id || !/^[A-Za-z0-9._-]+$/.test(id) || id === '.' || id === '..') {
    throw new InputError('--mint-log-site needs $MISYSTEM_SITEID (letters, digits and ._-), which MInt sets for its modules', { step: 'config' });
  }
  return `/home/misystem/assets/workflow/${id}/solver_logs/solver_execute.log`;
}

export function mintLogFields(solver: string, jobId: string, env: NodeJS.ProcessEnv): MintLogFields {
  return {
    solver,
    userId: env.MINT_USER_ID ?? 'unknown',
    solverUuid: env.MINT_SOLVER_UUID ?? jobId,
    runId: env.MINT_RUN_ID ?? 'unknown',
    workflowId: env.MINT_WORKFLOW_ID ?? 'unknown',
  };
}

export function formatMintLogLine(event: MintLogEvent, fields: MintLogFields, when: Date = new Date(), format: MintLogFormat = 'workflow'): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  const time = `${p(when.getHours())}:${p(when.getMinutes())}:${p(when.getSeconds())}`;
  if (format === 'template') {
    return `${when.getFullYear()}-${p(when.getMonth() + 1)}-${p(when.getDate())} ${time}: ${event}: ${fields.solver}: unknown\n`;
  }
  const stamp = `${when.getFullYear()}/${p(when.getMonth() + 1)}/${p(when.getDate())} ${time}`;
  return `${stamp}: ${event}: ${fields.solver}: ${fields.userId}: ${fields.solverUuid}: ${fields.runId}: ${fields.workflowId}\n`;
}

/** Appends one line; the log's directory must already exist (InputError naming it otherwise). */
export async function appendMintLog(path: string, event: MintLogEvent, fields: MintLogFields, format: MintLogFormat = 'workflow'): Promise<void> {
  const dir = dirname(path);
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new InputError(`the MInt log's directory ${dir} does not exist; it is never created (create it, or name another --mint-log)`, { step: 'config' });
  }
  await appendFile(path, formatMintLogLine(event, fields, new Date(), format));
}
