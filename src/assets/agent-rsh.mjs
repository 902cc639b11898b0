#!/usr/bin/env node
// rsync's remote shell for the pull-mode agent (src/agent/agent.ts). Where SSH mode's rsync reaches
// the gateway through sshd, the agent's rsync reaches the same gateway script here, on the same
// computer: this shim runs it as sshd would run the forced command, with the request in
// SSH_ORIGINAL_COMMAND and rsync's stream on its stdin and stdout. So an upload goes through the
// gateway's own put (its rsync template, limits, watchdog and audit), a download through its own
// get (the export allow-list, the munged staging tree, daemon mode). The argv rsync gives us
// (`HOST rsync --server ...`) only supplies the capability string; the gateway checks it again.
import { spawn } from 'node:child_process';

const argv = process.argv.slice(2);
const gateway = JSON.parse(process.env.MINT_AGENT_GATEWAY ?? '[]');
const job = process.env.MINT_AGENT_JOB ?? '';
const verb = process.env.MINT_AGENT_VERB ?? '';
let command;
if (verb === 'put') {
  const flags = argv.find((a) => /^-[A-Za-z]*?e\d*\.[A-Za-z]*$/.test(a)) ?? '';
  command = `mint-gw put ${job} ${flags.replace(/^-[A-Za-z]*?e/, '')}`;
} else if (verb === 'get' && argv.includes('--daemon')) {
  command = `mint-gw get ${job}`;
} else {
  process.stderr.write(`agent-rsh: unexpected rsync request ${JSON.stringify(argv)}\n`);
  process.exit(255);
}
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MINT_AGENT_')));
env.SSH_ORIGINAL_COMMAND = command;
const child = spawn('/bin/sh', gateway, { stdio: 'inherit', env });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + 15 : 255)));
child.on('error', (error) => {
  process.stderr.write(`agent-rsh: ${error.message}\n`);
  process.exit(255);
});
