/**
 * The one module that knows where the shipped non-TypeScript files are: the gateway script, the
 * rsync remote-shell shims and the sample remote-side program. The package ships src/assets/ and
 * examples/ as they are (package.json "files"); this module sits two levels below the package root
 * both as src/assets/index.ts (tests run the sources) and as dist/assets/index.js, so one relative
 * URL finds them from either.
 */
import { fileURLToPath } from 'node:url';

const fromRoot = (path: string): string => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** The forced-command gateway (POSIX sh), copied to the external computer by `mint-gateway install`. */
export const GATEWAY_SCRIPT = fromRoot('src/assets/mint-gateway.sh');
/** rsync's --rsh on the MInt side: the Perl shim (starts in ~5 ms) ... */
export const PERL_SHIM = fromRoot('src/assets/rsh-shim.pl');
/** ... and the Node one, where Perl is missing. */
export const NODE_SHIM = fromRoot('src/assets/rsh-shim.mjs');
/** MInt's sample remote-side program, the sandbox's default. */
export const SAMPLE_PROGRAM = fromRoot('examples/execute_remote-side_program_ssh.sh');
/** rsync's remote shell for the pull-mode agent: runs the gateway here as sshd would (src/agent/agent.ts). */
export const AGENT_RSH = fromRoot('src/assets/agent-rsh.mjs');
/** The `mint-ssh-exec` CLI: the pull sandbox starts its hub and agent as the real commands. */
export const CLI_BIN = fromRoot('bin/mint-ssh-exec.mjs');
/** The package's package.json (its version, which the pull-mode agent reports to its hub). */
export const PACKAGE_JSON = fromRoot('package.json');
