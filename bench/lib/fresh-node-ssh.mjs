// B1's node-ssh row: the same trivial job as a JavaScript user would write it with node-ssh
// (ssh2 underneath), in a fresh process: connect with a key, mkdir, putFiles, execCommand,
// getFile, remove the dir. Written the natural way (node-ssh's defaults, no host-key check, which
// node-ssh does not do unless asked). argv: JSON {host, port, username, privateKeyPath},
// remote dir, program, input file, output dir.
import { basename, join } from 'node:path';
import { NodeSSH } from 'node-ssh';

const [targetJson, remoteDir, program, input, outputDir] = process.argv.slice(2);
const ssh = new NodeSSH();
await ssh.connect(JSON.parse(targetJson));
try {
  await ssh.mkdir(remoteDir, 'exec');
  await ssh.putFiles([{ local: input, remote: `${remoteDir}/${basename(input)}` }]);
  const r = await ssh.execCommand(`'${program}' > remote_program_exec.log 2>&1`, { cwd: remoteDir });
  if (r.code !== 0) throw new Error(`program exited ${r.code}`);
  await ssh.getFile(join(outputDir, 'result.txt'), `${remoteDir}/result.txt`);
  await ssh.execCommand(`rm -rf -- '${remoteDir}'`);
} finally {
  ssh.dispose();
}
