/** What a running job tells its caller, in order; the CLI's progress display is built on these. */
import type { RemoteResult } from '../types.js';

export type JobEvent =
  | { type: 'connecting'; host: string; attempt: number }
  | { type: 'connected'; host: string; ms: number }
  | { type: 'retrying'; step: string; attempt: number; delayMs: number; error: Error }
  /** `rate` is rsync's text (its MB are MiB); `bytesPerSecond` the same in bytes, when it could be read. */
  | { type: 'uploading'; bytes: number; percent: number; rate: string; bytesPerSecond: number | undefined }
  | { type: 'uploaded'; files: number; ms: number }
  | { type: 'waiting'; reason: string; delayMs: number }
  /** A batch scheduler holds the job: its id and why it waits (Priority, Resources...). */
  | { type: 'queued'; jobId: string; schedulerId: string; reason: string }
  | { type: 'started'; jobId: string; pid: number | undefined }
  | { type: 'log'; text: string }
  | { type: 'exited'; exitCode: number | undefined; state: string }
  | { type: 'downloading'; bytes: number; percent: number; rate: string; bytesPerSecond: number | undefined }
  | { type: 'downloaded'; files: number; ms: number }
  | { type: 'cleaned-up'; removed: boolean }
  | { type: 'done'; result: RemoteResult };

export type EventListener = (event: JobEvent) => void;
