import { PROBE_EXIT, probeHost, type ProbeResult } from '../../probe/probe.js';
import { ExitCode } from '../exit-codes.js';
import { defineCommand, parseCommand, printHelp, together } from '../options.js';
import { printJson, type Io } from '../output.js';
import { PROGRAM, configOption } from './common.js';

export const probeSpec = defineCommand({
  program: PROGRAM,
  name: 'probe',
  brief: 'check that hosts are ready to run jobs, with a fix for each failure',
  summary:
    'Check, step by step, that each HOST is ready to run jobs: configuration, reach, host key, authentication, gateway, rsync, program, job root, resources and latency; a fix for each failure. ' +
    "A pull host (mode: pull): the hub's reach and TLS identity, the submit token, the site, its agent (connected, last seen) and its gateway's facts as the agent reported them.",
  positionals: [{ name: 'HOST...', description: 'one or more host profile names (see --config) or ~/.ssh/config aliases, probed at once' }],
  options: {
    json: { type: 'boolean', description: 'print every step of every host as JSON on stdout' },
    config: configOption,
  },
  notes: [
    `exit status: 0 when every host is ready, else that of the first failing step of the first failing host: ${Object.entries(PROBE_EXIT)
      .map(([step, code]) => together(String(code), step))
      .join(', ')}; 2 is a usage error`,
  ],
});

export async function probeCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommand(probeSpec, args);
  if (values.help) return printHelp(io, probeSpec);
  const options = values.config ? { configFile: values.config } : {};
  // Several hosts are probed at once: a slow or dead one does not hold up the others.
  const results = await Promise.all(positionals.map((host) => probeHost(host, options)));
  if (values.json) printJson(io, { ok: results.every((r) => r.ok), hosts: results });
  else for (const result of results) printHuman(io, result);
  const firstFailure = results.find((r) => !r.ok);
  if (!firstFailure) return ExitCode.OK;
  const failed = firstFailure.steps.find((s) => !s.ok);
  return failed ? PROBE_EXIT[failed.step] : ExitCode.FAILED;
}

function printHuman(io: Io, result: ProbeResult): void {
  io.stdout.write(`${result.host}\n`);
  for (const step of result.steps) {
    const mark = !step.ok ? 'FAIL' : step.warning ? 'warn' : ' ok ';
    io.stdout.write(`  [${mark}] ${step.step.padEnd(12)} ${step.detail}\n`);
    if (step.warning) io.stdout.write(`         ${''.padEnd(12)} note: ${step.warning}\n`);
    if (step.hint) io.stdout.write(`         ${''.padEnd(12)} fix: ${step.hint}\n`);
  }
  const failed = result.steps.find((s) => !s.ok);
  io.stdout.write(failed ? `  verdict: NOT READY (failed at ${failed.step})\n\n` : '  verdict: READY\n\n');
}
