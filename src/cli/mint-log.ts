/**
 * MInt's solver_execute.log lines, as its workflow library writes them:
 * `%Y/%m/%d %H:%M:%S: start|normal end|abnormal end: <solver>: <user id>: <solver uuid>: <run id>: <workflow id>`
 */
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

export type MintLogEvent = 'start' | 'normal end' | 'abnormal end';

export interface MintLogFields {
  solver: string;
  userId: string;
  solverUuid: string;
  runId: string;
  workflowId: string;
}

/** The log's path: explicit, else MInt's own location when MISYSTEM_SITEID is set, else none. */
export function mintLogPath(explicit: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (explicit) return explicit;
  const site = env.MISYSTEM_SITEID;
  if (site && /^[A-Za-z0-9._-]+$/.test(site)) return `/home/misystem/assets/workflow/${site}/solver_logs/solver_execute.log`;
  return undefined;
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

export function formatMintLogLine(event: MintLogEvent, fields: MintLogFields, when: Date = new Date()): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  const stamp = `${when.getFullYear()}/${p(when.getMonth() + 1)}/${p(when.getDate())} ${p(when.getHours())}:${p(when.getMinutes())}:${p(when.getSeconds())}`;
  return `${stamp}: ${event}: ${fields.solver}: ${fields.userId}: ${fields.solverUuid}: ${fields.runId}: ${fields.workflowId}\n`;
}

export async function appendMintLog(path: string, event: MintLogEvent, fields: MintLogFields): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await appendFile(path, formatMintLogLine(event, fields));
}
