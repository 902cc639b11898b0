/** Options several `mint-ssh-exec` subcommands share, described once. */
import { ExitCode, errorReport } from '../exit-codes.js';
import { printJson, type Io } from '../output.js';
import { together, type ValueOption } from '../options.js';

export const PROGRAM = 'mint-ssh-exec';

export const configOption = {
  type: 'string',
  value: 'FILE',
  description: 'host profiles file (default: $MINT_SSH_EXEC_CONFIG, else ~/.config/mint-ssh-exec/hosts.yaml)',
} as const satisfies ValueOption;

export const hostArgument = { name: 'HOST', description: 'a host profile name (see --config) or an ~/.ssh/config alias' } as const;
export const jobArgument = { name: 'JOB', description: 'the job id (a UUID; see jobs)' } as const;

/** `200 config, 201 input, ...`: the codes of mint-ssh-exec's own failures, for the help texts. */
export function ownExitCodes(): string {
  return Object.entries(ExitCode)
    .filter(([, code]) => code >= 200)
    .map(([name, code]) => together(String(code), ...name.toLowerCase().split('_')))
    .join(', ');
}

/**
 * With --json, a failure is one JSON document on stdout too ({"error": {...}}, see errorReport), so
 * a caller that parses stdout always gets an answer; the human line still goes to stderr (main).
 */
export async function withJsonErrors(io: Io, json: boolean, command: () => Promise<number>): Promise<number> {
  try {
    return await command();
  } catch (error) {
    if (json) printJson(io, errorReport(error));
    throw error;
  }
}
