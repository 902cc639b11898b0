// B1's fresh-process job, as a MInt module runs one: a new `node` that imports the package by its
// name (package.json "exports": the bundle with its code cache, what a consumer gets) and runs one
// job. argv: JSON of the inline host, the input file, the output dir. Exit 0 only if the result is there.
import { runRemote } from 'mint-ssh-exec';

const [hostJson, input, outputDir] = process.argv.slice(2);
const r = await runRemote({ host: JSON.parse(hostJson), inputs: [input], outputDir, cleanup: 'always', timeoutMs: 120_000 });
if (r.exitCode !== 0 || !r.files.includes('result.txt')) {
  process.stderr.write(`runRemote: exit ${r.exitCode}, files ${r.files}\n`);
  process.exitCode = 1;
}
