import { parseArgs } from 'node:util';
import { PROBE_EXIT, probeHost, type ProbeResult } from '../../probe/probe.js';
import { ExitCode, UsageError } from '../exit-codes.js';
import { printJson, type Io } from '../output.js';

export const probeUsage = 'mint-ssh-exec probe HOST... [--json] [--config FILE]';

export async function probeCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, config: { type: 'string' } },
  });
  if (positionals.length === 0) throw new UsageError(`usage: ${probeUsage}`);
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
