/**
 * ProxyJump through a real bastion sshd: the target's connection is forwarded over the jump host's
 * (a direct-tcpip channel), both hosts' keys are verified, and the jump host's key line allows
 * nothing but forwarding to the target.
 */
import { describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runRemote } from '../../src/index.js';
import { freshDir, useSandbox } from '../support/fixture.js';

describe('ProxyJump', () => {
  const target = useSandbox();
  const jump = useSandbox();

  async function profiles(jumpKnownHosts?: string): Promise<string> {
    const t = target();
    const j = jump();
    // The bastion lets this key open a tunnel to the target's port and do nothing else.
    await writeFile(j.authorizedKeys, `restrict,port-forwarding,permitopen="127.0.0.1:${t.port}",command="/bin/false" ${j.clientPublicKey}\n`);
    const dir = await freshDir();
    const file = join(dir, 'hosts.yaml');
    await writeFile(
      file,
      [
        'hosts:',
        '  bastion:',
        '    hostname: 127.0.0.1',
        `    port: ${j.port}`,
        `    user: ${j.user}`,
        `    identityFile: ${j.clientKey}`,
        `    knownHostsFile: ${jumpKnownHosts ?? j.knownHosts}`,
        '    sshConfig: false',
        '    agent: false',
        '  calc:',
        '    hostname: 127.0.0.1',
        `    port: ${t.port}`,
        `    user: ${t.user}`,
        `    identityFile: ${t.clientKey}`,
        `    knownHostsFile: ${t.knownHosts}`,
        '    proxyJump: bastion',
        '    sshConfig: false',
        '    agent: false',
        '    retry:',
        '      retries: 0',
        '',
      ].join('\n'),
    );
    return file;
  }

  it('runs a job on the target through the bastion', async () => {
    const out = await freshDir();
    const r = await runRemote({ host: 'calc', configFile: await profiles(), outputDir: out });
    expect(r.exitCode).toBe(0);
    expect(r.files).toContain('results/line_counts.txt');
  });

  it('verifies the bastion\'s host key too', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'empty'), '');
    await expect(runRemote({ host: 'calc', configFile: await profiles(join(dir, 'empty')), outputDir: dir })).rejects.toMatchObject({ code: 'HOST_KEY_UNKNOWN' });
  });
});
