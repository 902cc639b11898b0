/**
 * The package as a consumer gets it: `npm pack` (its prepack builds dist/), installed into a fresh
 * project, which type-checks a module using runRemote and the sandbox entry with `strict` and
 * `skipLibCheck: false` (so every public .d.ts, and what it imports, must resolve), then runs it:
 * a real job through the installed copy's gateway.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

describe('the packed package in a consumer project', () => {
  let dir = '';
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('installs from the tarball, type-checks with skipLibCheck false, and runs a job', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mint-consumer-'));
    execFileSync('npm', ['pack', ROOT, '--silent', '--pack-destination', dir], { cwd: dir, stdio: 'pipe' });
    const tarball = (await readdir(dir)).find((f) => f.endsWith('.tgz'));
    expect(tarball).toBeDefined();
    const listing = execFileSync('tar', ['tzf', join(dir, tarball!)], { encoding: 'utf8' }).split('\n');
    expect(listing).toContain('package/LICENSE');
    expect(listing).toContain('package/dist/index.d.ts');
    expect(listing).toContain('package/src/assets/mint-gateway.sh');
    expect(listing.filter((f) => f.includes('tsbuildinfo'))).toEqual([]);

    const app = join(dir, 'app');
    execFileSync('mkdir', ['-p', app]);
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    execFileSync('npm', ['install', join(dir, tarball!), '--prefer-offline', '--no-audit', '--no-fund', '--silent'], { cwd: app, stdio: 'pipe' });
    await writeFile(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: false, outDir: 'out', types: ['node'] },
        include: ['main.ts'],
      }),
    );
    await writeFile(
      join(app, 'main.ts'),
      `import { runRemote, isMintSshError, type RemoteResult } from 'mint-ssh-exec';
import { startSandbox, type Sandbox } from 'mint-ssh-exec/sandbox';

const sandbox: Sandbox = await startSandbox();
try {
  const result: RemoteResult = await runRemote({ host: sandbox.host, outputDir: 'results' });
  console.log(\`exit=\${result.exitCode} files=\${result.files.length}\`);
} catch (error) {
  console.log(isMintSshError(error) ? error.code : String(error));
} finally {
  await sandbox.stop();
}
`,
    );
    const tsc = (() => {
      try {
        return { code: 0, out: execFileSync(process.execPath, [TSC, '-p', app], { cwd: app, encoding: 'utf8' }) };
      } catch (error) {
        const e = error as { status: number; stdout: string };
        return { code: e.status, out: e.stdout };
      }
    })();
    expect(tsc, tsc.out).toEqual({ code: 0, out: '' });
    const run = execFileSync(process.execPath, [join(app, 'out', 'main.js')], { cwd: app, encoding: 'utf8', timeout: 120_000 });
    expect(run).toMatch(/^exit=0 files=\d+$/m);
  }, 240_000);
});
