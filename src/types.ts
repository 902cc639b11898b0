/**
 * The types every layer shares: how a job stands on the external computer and what a finished job
 * returns. One result shape for every job, success or failure (execa's lesson).
 */

/** How a job stands on the external computer. */
export type JobState = 'created' | 'queued' | 'running' | 'exited' | 'cancelled' | 'lost';

/** What a batch scheduler said about a job (gateways installed with `--scheduler slurm`). */
export interface SchedulerInfo {
  /** The scheduler's job id (Slurm's), or '-' before it was known. */
  id: string;
  /** The scheduler's own state word: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT... */
  state: string;
  /** Its reason: Priority, Resources, JobHeldUser, TimeLimit, NonZeroExitCode, None... */
  reason: string;
}

/** What a job asks of a batch scheduler; each at most the site's maximum (else E_LIMIT). */
export interface Resources {
  cpus?: number;
  memoryMb?: number;
  walltimeMinutes?: number;
  nodes?: number;
}

/** One file of a manifest (issue 17): its path, size and SHA-256. */
export interface ManifestEntry {
  /** Relative to the job's work dir (inputs) or to outputDir (outputs), `/`-separated. */
  path: string;
  bytes: number;
  /** Lowercase hex. */
  sha256: string;
}

/** One file whose bytes differ between what was sent and what arrived: missing, extra, or changed. */
export interface ManifestDifference {
  path: string;
  problem: 'missing' | 'extra' | 'changed';
  expected?: { bytes: number; sha256: string };
  actual?: { bytes: number; sha256: string };
}

export interface JobTimings {
  connectMs: number;
  uploadMs: number;
  runMs: number;
  downloadMs: number;
  cleanupMs: number;
  totalMs: number;
  /** How long the start waited for the inputs' manifest after the upload it overlapped with (runRemote with inputs). */
  hashWaitMs?: number;
}

export interface RemoteResult {
  host: string;
  jobId: string;
  /** The program's exit status; for a program killed by a signal, 128 + the signal number. */
  exitCode: number | undefined;
  /** How the job ended on the remote side. */
  state: JobState;
  /** True when the program did not exit 0 (or was cancelled, or lost). */
  failed: boolean;
  cancelled: boolean;
  /**
   * The end of remote_program_exec.log (the program's stdout and stderr): its last 1 MiB at most
   * (LOG_TAIL_BYTES), the whole log when smaller. The whole log is in `logFile`, streamed to disk as
   * it arrived, so a log of any size costs no memory.
   */
  log: string;
  /** outputDir/remote_program_exec.log: the whole log. */
  logFile: string;
  /** The whole log's size in bytes (`log` is shorter when this exceeds 1 MiB). */
  logBytes: number;
  /**
   * Every file of the output, relative to outputDir, whether this download sent it or it was
   * already there unchanged (in-tree symlinks among them, as symlinks).
   */
  files: string[];
  /** Symlinks the program left that point outside its work dir: never made here, `path -> target`. */
  skipped: string[];
  outputDir: string;
  /** Whether the remote job directory was removed. */
  cleanedUp: boolean;
  /** SSH connections the job needed: 1, unless the network dropped and it reconnected. */
  connections: number;
  timings: JobTimings;
  /** Present when the site runs programs through a batch scheduler: its last word on the job. */
  scheduler?: SchedulerInfo;
  /**
   * Every output file the gateway served, as it hashed it before sending, and as checked here after
   * it landed (sorted by path; symlinks are not in it). Empty when nothing was downloaded.
   */
  manifest: ManifestEntry[];
  /** outputDir/.mint-job.json: the job record (host, gateway, certificate, timings, both manifests, audit head); absent when none was written. */
  recordFile?: string;
}
