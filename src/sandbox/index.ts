/**
 * `mint-ssh-exec/sandbox`: a throwaway external computer on this machine (a private sshd with the
 * real gateway), for demos, tests and a site admin's first try. Not part of the core entry.
 */
export { startSandbox, type Sandbox, type SandboxOptions } from './sandbox.js';
export { startPullSandbox, type PullSandbox, type PullSandboxOptions } from './pull.js';
export { SAMPLE_PROGRAM } from '../assets/index.js';
