import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { authorizedKeysLine, install, parsePublicKey, uninstall } from '../../src/site/install.js';
import { freshDir } from '../support/fixture.js';

const FRAGMENTS = join(import.meta.dirname, '..', '..', 'authorized_keys.d');
const PATHS = {
  gatewayPath: '/home/mint/.mint/mint-gateway.sh',
  root: '/home/mint/mint-jobs',
  program: '/home/mint/misrc_remote_workflow/scripts/execute_remote-side_program_ssh.sh',
};

async function keyPair(dir: string, name = 'k'): Promise<string> {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'mint@ops', '-f', join(dir, name)]);
  return readFile(join(dir, `${name}.pub`), 'utf8');
}

describe('parsePublicKey refuses what sshd would refuse', () => {
  it.each([
    ['empty input', ''],
    ['a private key', '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----'],
    ['an unknown key type', 'ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAICvcfkPdrSE+BZbr/Zd6cuEFG5rUWOKi2V+Qo+sQZvPy x'],
    ['base64 with a quote', 'ssh-ed25519 AAAA"C3Nz x'],
    ['a type that disagrees with the blob', 'ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAICvcfkPdrSE+BZbr/Zd6cuEFG5rUWOKi2V+Qo+sQZvPy x'],
    ['a blob that is not an SSH key', 'ssh-ed25519 aGVsbG8gd29ybGQ= x'],
    ['an options prefix smuggled in', 'command="sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICvcfkPdrSE+BZbr/Zd6cuEFG5rUWOKi2V+Qo+sQZvPy'],
  ])('refuses %s', (_what, text) => {
    expect(() => parsePublicKey(text)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it('accepts a real key and computes its fingerprint like ssh-keygen', async () => {
    const dir = await freshDir();
    const pub = await keyPair(dir);
    const fp = execFileSync('ssh-keygen', ['-lf', join(dir, 'k.pub')], { encoding: 'utf8' }).split(' ')[1];
    expect(parsePublicKey(pub)).toMatchObject({ type: 'ssh-ed25519', fingerprint: fp, comment: 'mint@ops' });
  });
});

describe('authorizedKeysLine', () => {
  const key = parsePublicKey('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICvcfkPdrSE+BZbr/Zd6cuEFG5rUWOKi2V+Qo+sQZvPy x');

  it('refuses paths and values that would need quoting inside command="..."', () => {
    for (const bad of ['/home/u/my jobs', '/home/u/$(id)', 'relative/path', '/home/u/"x', '/home/u/a;b']) {
      expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { root: bad, program: PATHS.program })).toThrow(/absolute path/);
    }
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, keyName: 'a b' })).toThrow(/key-name/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, export: "*.csv' ; id '" })).toThrow(/export/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, PATHS, { from: '1.2.3.4" command="sh' })).toThrow(/from/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, PATHS, { expiryTime: 'tomorrow' })).toThrow(/expiry-time/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, PATHS, { principals: 'x' })).toThrow(/cert-authority/);
    // A client allowed to set one of these runs code of its choosing (BASH_ENV='$(id)', LD_PRELOAD).
    for (const name of ['BASH_ENV', 'LD_PRELOAD', 'PATH', 'PYTHONPATH', 'MINT_JOB_DIR']) {
      expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, allowEnv: ['MINT_CASE', name] })).toThrow(/run code of its choosing/);
    }
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, programs: { 'a/b': '/x' } })).toThrow(/NAME/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, programs: { a: 'rel/x' } })).toThrow(/absolute path/);
    // Schedulers: site submission options are plain tokens that may not set what the gateway sets
    // for that scheduler (the gateway refuses the same, mgw_sched_gateway_option).
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'lsf' as never })).toThrow(/--scheduler must be slurm, sge, pbs or none/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'sge', schedulerArgs: '-q all.q -b y' })).toThrow(/may not set '-b'/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'sge', schedulerArgs: '-@ /tmp/opts' })).toThrow(/may not set '-@'/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'pbs', schedulerArgs: '-q short -W block=true' })).toThrow(/may not set 'block=true'/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'pbs', schedulerArgs: '-Nname' })).toThrow(/may not set '-Nname'/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'pbs', schedulerBin: 'opt/pbs/bin' })).toThrow(/absolute path/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'pbs', schedulerBin: '/opt/../tmp' })).toThrow(/without \.\./);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, schedulerBin: '/opt/pbs/bin' })).toThrow(/needs --scheduler/);
    expect(authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'pbs', schedulerBin: '/opt/pbs/bin', schedulerArgs: '-q short -W group_list=mint' })).toContain(
      "--scheduler pbs --scheduler-bin /opt/pbs/bin --scheduler-args '-q short -W group_list=mint'",
    );
    expect(authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'sge', schedulerArgs: '-q all.q -pe smp 4' })).toContain("--scheduler sge --scheduler-args '-q all.q -pe smp 4'");
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'slurm', schedulerArgs: "-p a' ; id '" })).toThrow(/byte outside/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'slurm', schedulerArgs: '-p a -D /tmp' })).toThrow(/may not set '-D'/);
    expect(() => authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, schedulerArgs: '-p a' })).toThrow(/needs --scheduler slurm/);
    expect(authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, scheduler: 'slurm', schedulerArgs: '-p short --qos=normal', maxCpus: 8 })).toContain(
      "--max-cpus 8 --scheduler slurm --scheduler-args '-p short --qos=normal'",
    );
  });

  it('writes exactly the fragments kept in authorized_keys.d/', async () => {
    const basic = (await readFile(join(FRAGMENTS, 'mint-basic'), 'utf8')).trim();
    expect(authorizedKeysLine(key, PATHS.gatewayPath, { ...PATHS, keyName: 'mint' })).toBe(basic);
    const restricted = (await readFile(join(FRAGMENTS, 'mint-restricted'), 'utf8')).trim();
    expect(
      authorizedKeysLine(
        key,
        PATHS.gatewayPath,
        { ...PATHS, keyName: 'mint', export: '*.csv,results/**', maxJobs: 4, minFreeMb: 1024, maxAgeDays: 30 },
        { from: '127.0.0.1,192.0.2.0/24', expiryTime: '20300101' },
      ),
    ).toBe(restricted);
    const caLine = (await readFile(join(FRAGMENTS, 'mint-cert-authority'), 'utf8')).trim();
    const ca = parsePublicKey(caLine.slice(caLine.indexOf('ssh-ed25519')));
    expect(authorizedKeysLine(ca, PATHS.gatewayPath, { ...PATHS, keyName: 'mint-cert' }, { certAuthority: true, principals: 'mint-operator' })).toBe(caLine);
  });
});

describe('install and uninstall', () => {
  it('adds one line, is idempotent, updates in place, keeps other lines, and uninstall removes only its own', async () => {
    const dir = await freshDir();
    const pub = await keyPair(dir);
    const other = await keyPair(dir, 'other');
    const keys = join(dir, 'home', '.ssh', 'authorized_keys');
    const base = { publicKey: pub, gatewayPath: join(dir, 'home', '.mint', 'mint-gateway.sh'), authorizedKeys: keys, gateway: { root: join(dir, 'home', 'mint-jobs'), program: '/bin/true' } };
    await install({ ...base, print: false });
    const { mkdir, appendFile } = await import('node:fs/promises');
    await mkdir(join(dir, 'home', '.ssh'), { recursive: true });
    await appendFile(keys, other); // a line that is not ours, added later by the user
    expect((await install(base)).action).toBe('unchanged');
    expect((await install({ ...base, gateway: { ...base.gateway, maxJobs: 2 } })).action).toBe('updated');
    const text = await readFile(keys, 'utf8');
    expect(text.split('\n').filter((l) => l.includes(pub.split(' ')[1]!))).toHaveLength(1);
    expect(text).toContain('--max-jobs 2');
    expect(text).toContain(other.trim());
    expect((await stat(keys)).mode & 0o777).toBe(0o600);
    expect((await stat(base.gatewayPath)).mode & 0o777).toBe(0o755);
    expect((await stat(base.gateway.root)).mode & 0o777).toBe(0o700);
    expect(await uninstall({ publicKey: pub, authorizedKeys: keys })).toBe(true);
    expect((await readFile(keys, 'utf8')).trim()).toBe(other.trim());
    expect(await uninstall({ publicKey: pub, authorizedKeys: keys })).toBe(false);
    // A hand-written line for the same key (no marker) is the user's, not ours: left alone.
    await writeFile(keys, `${pub.trim()}\n`);
    expect(await uninstall({ publicKey: pub, authorizedKeys: keys })).toBe(false);
  });
});
