/**
 * `mint-ssh-exec/cli`: what the command line is made of, for programs that want to look like it:
 * the progress display and probe's exit codes. Not part of the core entry.
 */
export { progressReporter } from './progress.js';
export { PROBE_EXIT } from '../probe/probe.js';
