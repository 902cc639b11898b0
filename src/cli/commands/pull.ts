/** `mint-ssh-exec hub` and `mint-ssh-exec agent`: pull mode's two ends (issue 18). */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Agent } from '../../agent/agent.js';
import { ConfigError } from '../../errors.js';
import { Hub } from '../../hub/server.js';
import { initHub } from '../../hub/init.js';
import { openStore } from '../../hub/open-store.js';
import { parseStore } from '../../hub/store.js';
import { readCa, readToken } from '../../pull/http.js';
import { SITE_NAME } from '../../pull/wire.js';
import { ExitCode } from '../exit-codes.js';
import { defineCommand, parseCommand, printHelp, usageError } from '../options.js';
import { printJson, type Io } from '../output.js';
import { PROGRAM } from './common.js';

export const hubSpec = defineCommand({
  program: PROGRAM,
  name: 'hub',
  brief: "pull mode's hub: serve jobs to sites' agents over HTTPS; manage sites",
  summary:
    'Without ACTION: serve on --listen (HTTPS) from --data. init: make DIR\'s private CA, server certificate and submit token ' +
    '(DIR/submit.token). add-site NAME: print a new token for the site, once (stored hashed). revoke-site NAME: refuse its token from now on.',
  positionals: [
    { name: '[ACTION]', description: 'init, add-site, revoke-site or sites; none to serve' },
    { name: '[NAME]', description: 'the site (add-site, revoke-site)' },
  ],
  options: {
    data: { type: 'string', value: 'DIR', required: true, description: "the hub's state: its SQLite database, files and certificates (shared by all replicas)" },
    store: {
      type: 'string',
      value: 'sqlite|URL',
      description: 'where jobs and tokens are kept: sqlite (DIR/hub.sqlite, the default) or postgres://USER@HOST:PORT/DB for several replicas; default $MINT_HUB_STORE',
    },
    listen: { type: 'string', value: 'HOST:PORT', description: 'serve: where to listen (default 127.0.0.1:8443)' },
    cert: { type: 'string', value: 'FILE', description: 'serve: PEM server certificate (default DIR/server.pem from init)' },
    key: { type: 'string', value: 'FILE', description: 'serve: its PEM key (default DIR/server.key)' },
    name: { type: 'string', value: 'NAME', multiple: true, description: 'init: a DNS name or address the certificate is for (besides localhost, 127.0.0.1)' },
    json: { type: 'boolean', description: 'print the result as JSON on stdout' },
  },
});

export async function hubCommand(args: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseCommand(hubSpec, args);
  if (values.help) return printHelp(io, hubSpec);
  const data = resolve(values.data);
  const [action, name] = positionals;
  const spec = parseStore(values.store ?? process.env.MINT_HUB_STORE);
  if (action === 'init') {
    const made = await initHub(data, values.name ?? [], spec);
    if (values.json) printJson(io, made);
    else io.stdout.write(`hub in ${data}: CA ${made.ca}, certificate ${made.cert}\nsubmit token (in ${made.submitTokenFile}): ${made.submitToken}\n`);
    return ExitCode.OK;
  }
  if (action === 'add-site' || action === 'revoke-site') {
    if (name === undefined || !SITE_NAME.test(name)) throw usageError(hubSpec, 'a site NAME of letters, digits and ._- is needed');
    const store = await openStore(data, spec, false);
    try {
      if (action === 'add-site') {
        const token = await store.addPrincipal('site', name);
        if (values.json) printJson(io, { site: name, token });
        else io.stdout.write(`${token}\n`);
        io.stderr.write(`site ${name}: this token is shown once; put it in a file (mode 0600) for the agent's --token-file\n`);
      } else if (!(await store.revoke('site', name))) {
        throw new ConfigError(`no site ${name} on the hub in ${data}`);
      } else io.stderr.write(`site ${name}: token revoked\n`);
    } finally {
      await store.close();
    }
    return ExitCode.OK;
  }
  if (action === 'sites') {
    const store = await openStore(data, spec, false);
    try {
      const rows = await store.principals();
      if (values.json) printJson(io, rows);
      else for (const r of rows) io.stdout.write(`${r.kind} ${r.name}${r.revoked ? ' revoked' : ''}\n`);
    } finally {
      await store.close();
    }
    return ExitCode.OK;
  }
  if (action !== undefined) throw usageError(hubSpec, `unknown ACTION ${JSON.stringify(action)}`);
  const m = /^(.+):(\d{1,5})$/.exec(values.listen ?? '127.0.0.1:8443');
  if (!m) throw usageError(hubSpec, '--listen takes HOST:PORT');
  const read = (file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      throw new ConfigError(`cannot read ${file}`, { hint: `run \`mint-ssh-exec hub init --data ${data}\`, or give --cert and --key` });
    }
  };
  const cert = read(values.cert ?? join(data, 'server.pem'));
  const key = read(values.key ?? join(data, 'server.key'));
  const store = await openStore(data, spec);
  const hub = new Hub({ data, host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]), cert, key, store });
  const at = await hub.listen().catch(async (error: NodeJS.ErrnoException) => {
    await hub.close().catch(() => undefined);
    // A port in use or not ours to take is the operator's to fix, not an internal error.
    throw new ConfigError(`the hub cannot listen on ${values.listen ?? '127.0.0.1:8443'}: ${error.code ?? error.message}`, {
      hint: error.code === 'EADDRINUSE' ? 'another process listens there: choose another --listen port, or stop it' : 'check --listen HOST:PORT (an address of this machine; ports below 1024 need privileges)',
    });
  });
  io.stderr.write(`mint-ssh-exec hub: listening on https://${at.host}:${at.port} (data ${data}, ${store.describe})\n`);
  await new Promise<void>((done) => {
    const stop = (): void => done();
    signal.addEventListener('abort', stop, { once: true });
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await hub.close();
  return ExitCode.OK;
}

/** The gateway's own options, passed to it as its authorized_keys line would (the gateway checks them). */
const GATEWAY_VALUE_OPTIONS = ['root', 'export', 'max-jobs', 'min-free-mb', 'max-age-days', 'grace', 'min-free-inodes', 'max-job-mb', 'max-job-files', 'client-timeout', 'rsync', 'scheduler', 'scheduler-args', 'max-cpus', 'max-memory-mb', 'max-walltime-min'] as const;
const GATEWAY_MULTIPLE_OPTIONS = ['program', 'allow-env', 'env'] as const;

export const agentSpec = defineCommand({
  program: PROGRAM,
  name: 'agent',
  brief: "pull mode's agent: run a site's jobs from a hub, through the gateway, with no inbound port",
  summary:
    'Long-polls the hub over HTTPS for this site\'s jobs and runs each through the gateway script on this computer, with the ' +
    "gateway's options given here as mint-gateway install would write them (--root, --program, --export, limits, --env...).",
  positionals: [],
  options: {
    hub: { type: 'string', value: 'URL', required: true, description: "the hub's https:// URL" },
    site: { type: 'string', value: 'NAME', required: true, description: 'this site, as `hub add-site` named it' },
    'token-file': { type: 'string', value: 'FILE', required: true, description: "the site's token (from `hub add-site`)" },
    ca: { type: 'string', value: 'FILE', description: "the CA of the hub's certificate (the hub's DIR/ca.pem from init); default the system's" },
    spool: { type: 'string', value: 'DIR', description: 'where inputs and results wait on their way (default ROOT.mint-agent, beside the job root)' },
    root: { type: 'string', value: 'DIR', required: true, description: 'gateway: the job root' },
    program: { type: 'string', value: 'PATH|NAME=PATH', multiple: true, description: "gateway: the site's program(s)" },
    'allow-env': { type: 'string', value: 'NAME[,NAME]', multiple: true, description: 'gateway: variables a job may set' },
    env: { type: 'string', value: 'NAME=VALUE', multiple: true, description: "gateway: the site's variables for every program" },
    export: { type: 'string', value: 'GLOBS', description: 'gateway: the results that may leave (comma-separated globs)' },
    'max-jobs': { type: 'string', value: 'N', description: 'gateway: jobs at once' },
    'min-free-mb': { type: 'string', value: 'N', description: 'gateway: free space floor' },
    'max-age-days': { type: 'string', value: 'N', description: 'gateway: sweep jobs older than this' },
    grace: { type: 'string', value: 'S', description: 'gateway: seconds from TERM to KILL on cancel' },
    'min-free-inodes': { type: 'string', value: 'N', description: 'gateway: free inodes floor' },
    'max-job-mb': { type: 'string', value: 'N', description: 'gateway: size cap per job' },
    'max-job-files': { type: 'string', value: 'N', description: 'gateway: file cap per job' },
    'client-timeout': { type: 'string', value: 'S', description: 'gateway: rsync timeout' },
    rsync: { type: 'string', value: 'PATH', description: 'gateway: the rsync binary' },
    scheduler: { type: 'string', value: 'slurm|none', description: 'gateway: batch scheduler' },
    'scheduler-args': { type: 'string', value: 'ARGS', description: "gateway: the scheduler's extra arguments" },
    'max-cpus': { type: 'string', value: 'N', description: 'gateway: scheduler maximum' },
    'max-memory-mb': { type: 'string', value: 'N', description: 'gateway: scheduler maximum' },
    'max-walltime-min': { type: 'string', value: 'N', description: 'gateway: scheduler maximum' },
  },
});

export async function agentCommand(args: string[], io: Io, signal: AbortSignal): Promise<number> {
  const { values } = parseCommand(agentSpec, args);
  if (values.help) return printHelp(io, agentSpec);
  if (!SITE_NAME.test(values.site)) throw usageError(agentSpec, '--site takes letters, digits and ._-');
  const gatewayArgs: string[] = [];
  for (const name of GATEWAY_VALUE_OPTIONS) {
    const value = values[name];
    if (value !== undefined) gatewayArgs.push(`--${name}`, name === 'root' ? resolve(value) : value);
  }
  for (const name of GATEWAY_MULTIPLE_OPTIONS) for (const value of values[name] ?? []) gatewayArgs.push(`--${name}`, value);
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  signal.addEventListener('abort', stop, { once: true });
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const agent = new Agent({
    target: { hub: values.hub, token: readToken(values['token-file'], 'agent'), name: values.site, ...(values.ca ? { ca: readCa(values.ca, 'agent') ?? '' } : {}) },
    site: values.site,
    gatewayArgs,
    spool: resolve(values.spool ?? `${resolve(values.root)}.mint-agent`),
    signal: controller.signal,
    log: (line) => io.stderr.write(`mint-ssh-exec agent: ${line}\n`),
    // Said once the hub knows this site's facts (probe shows them) and the agent is polling.
    onReady: () => io.stderr.write(`mint-ssh-exec agent: site ${values.site}, polling ${values.hub}\n`),
  });
  await agent.run();
  return ExitCode.OK;
}
