#!/usr/bin/env node
// Set-up shared by `npm test`, `npm run demo` and `npm run bench`: installs what a fresh machine
// lacks, so the README's commands work verbatim. Node built-ins only: it runs before `npm ci`.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const forTests = process.argv.includes('--test');

function log(message) {
  process.stderr.write(`[setup] ${message}\n`);
}

function npmDependencies() {
  const lock = join(root, 'package-lock.json');
  const installed = join(root, 'node_modules', '.package-lock.json');
  if (existsSync(installed) && statSync(installed).mtimeMs >= statSync(lock).mtimeMs) return;
  log('installing npm dependencies (npm ci)');
  const result = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

function have(path) {
  return existsSync(path);
}

function onPath(name) {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

function postgresBinaries() {
  const base = '/usr/lib/postgresql';
  return have(base) && readdirSync(base).some((v) => have(join(base, v, 'bin', 'initdb')) && have(join(base, v, 'bin', 'postgres')));
}

function systemPackages() {
  const wanted = [];
  if (!['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/sbin/sshd'].some(have)) wanted.push('openssh-server');
  if (!onPath('ssh-keygen')) wanted.push('openssh-client');
  if (!onPath('rsync')) wanted.push('rsync');
  if (!onPath('setsid')) wanted.push('util-linux');
  // Pull mode's `hub init` makes its CA and certificate with the openssl CLI (the demo's and the
  // bench's pull sandbox, the pull tests); slim images lack it.
  if (!onPath('openssl')) wanted.push('openssl');
  if (forTests && !onPath('shellcheck')) wanted.push('shellcheck');
  if (forTests && !onPath('dash')) wanted.push('dash');
  // test/gateway/verb-cost.test.ts counts the gateway's syscalls.
  if (forTests && !onPath('strace')) wanted.push('strace');
  // The cluster tests (test/cluster/) start a private single-node Slurm: munged + slurmctld + slurmd
  // as root, jobs submitted with sbatch. The 8 packages these pull in need no systemd.
  if (forTests && !['/usr/sbin/slurmctld', '/usr/sbin/slurmd'].every(have)) wanted.push('slurmctld', 'slurmd');
  if (forTests && !onPath('sbatch')) wanted.push('slurm-client');
  if (forTests && !['/usr/sbin/munged', '/usr/bin/munged'].some(have)) wanted.push('munge');
  // test/cluster/sge.test.ts starts a private Grid Engine cell (sge_qmaster + sge_execd). The three
  // packages pull in 13 (exim4 and tcsh among them, through their dependencies); on a machine whose
  // policy-rc.d refuses starts (exit 101) their system daemons are not started by the install, and
  // the private cell uses its own SGE_ROOT and ports either way.
  if (forTests && !have('/usr/sbin/sge_qmaster')) wanted.push('gridengine-master');
  if (forTests && !have('/usr/sbin/sge_execd')) wanted.push('gridengine-exec');
  if (forTests && !have('/usr/bin/qsub')) wanted.push('gridengine-client');
  // test/pull/ runs the hub on a private PostgreSQL server (initdb + postgres in a temp dir, as the
  // package's `postgres` user, on a free port); the binaries are in /usr/lib/postgresql/VERSION/bin.
  // The package also creates (and, where policy-rc.d allows, starts) Debian's own cluster on 5432,
  // which the tests do not use.
  if (forTests && !postgresBinaries()) wanted.push('postgresql');
  if (wanted.length === 0) return;
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !onPath('apt-get')) {
    log(`missing system packages: ${wanted.join(' ')}`);
    log(`install them with your package manager, e.g.: sudo apt-get install -y ${wanted.join(' ')}`);
    process.exit(1);
  }
  log(`installing system packages: ${wanted.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  if (update.status !== 0) process.exit(update.status ?? 1);
  const result = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...wanted], { stdio: 'inherit', env });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

function nodeVersion() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  const engines = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).engines.node;
  if (major < 20 || (major === 20 && minor < 19)) {
    log(`Node ${process.versions.node} is too old; this package needs ${engines}`);
    process.exit(1);
  }
}

nodeVersion();
systemPackages();
npmDependencies();

