/** A fresh home of an external computer's account: MInt's key pair as ~/mint{,.pub} and an executable program. */
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freshDir } from './fixture.js';

export async function siteHome(): Promise<{ home: string; pub: string; program: string }> {
  const home = await freshDir();
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'mint', '-f', join(home, 'mint')]);
  const program = join(home, 'misrc_remote_workflow', 'scripts', 'execute_remote-side_program_ssh.sh');
  await mkdir(join(home, 'misrc_remote_workflow', 'scripts'), { recursive: true });
  await writeFile(program, '#!/bin/sh\necho ok\n');
  await chmod(program, 0o755);
  return { home, pub: await readFile(join(home, 'mint.pub'), 'utf8'), program };
}
