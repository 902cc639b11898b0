import { MintSshError } from '../errors.js';
import type { RemoteResult } from './result.js';

/** Thrown only with throwOnFailure: the program ran and failed; the full result rides along. */
export class RemoteJobError extends MintSshError {
  readonly result: RemoteResult;

  constructor(result: RemoteResult) {
    const how = result.state === 'exited' ? `exited with code ${result.exitCode}` : `ended as ${result.state}`;
    const tail = result.log.trimEnd().split('\n').slice(-10).join('\n');
    super('REMOTE_FAILED', `remote program on ${result.host} ${how} (job ${result.jobId})\n---------- remote side log ----------------\n${tail}\n-------------------------------------------`, {
      host: result.host,
      jobId: result.jobId,
      step: 'run',
    });
    this.result = result;
  }
}
