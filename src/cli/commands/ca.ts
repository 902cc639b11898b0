import { homedir } from 'node:os';
import { DEFAULT_CA_DIR, expandHome } from '../../config/resolve-host.js';
import { CA_PASSPHRASE_ENV, initAuthority, readAuthorityPublic } from '../../connection/cert-authority.js';
import { ConfigError } from '../../errors.js';
import { ExitCode } from '../exit-codes.js';
import { defineCommand, parseCommand, printHelp, usageError } from '../options.js';
import { printJson, type Io } from '../output.js';
import { PROGRAM } from './common.js';

export const caSpec = defineCommand({
  program: PROGRAM,
  name: 'ca',
  brief: "create or show MInt's certificate authority (per-job certificates)",
  summary:
    "init: create MInt's CA (an ed25519 key) for `certificate: per-job` host profiles, encrypted with " +
    `$${CA_PASSPHRASE_ENV} (or unprotected with --no-passphrase). show: print its public key and the ` +
    'mint-gateway install line a site runs to trust it.',
  positionals: [{ name: 'ACTION', description: 'init or show' }],
  options: {
    dir: { type: 'string', value: 'DIR', description: `the CA's directory (default: ${DEFAULT_CA_DIR})` },
    'no-passphrase': { type: 'boolean', description: 'init: write the CA key unencrypted (tests; or move it into ssh-agent and delete the file)' },
    force: { type: 'boolean', description: 'init: replace an existing CA' },
    principals: { type: 'string', value: 'NAMES', description: "show: the principals the site accepts (its principals=\"...\"); default: the certificate's principal must be the login name" },
    json: { type: 'boolean', description: 'print the result as JSON on stdout' },
  },
  notes: [
    `A per-job certificate is signed with the key in DIR/ca (its passphrase from $${CA_PASSPHRASE_ENV}), or, ` +
      'when DIR holds only ca.pub, by the ssh-agent that holds that key.',
  ],
});

export async function caCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommand(caSpec, args);
  if (values.help) return printHelp(io, caSpec);
  const [action] = positionals;
  const dir = expandHome(values.dir ?? DEFAULT_CA_DIR, io.env.HOME ?? homedir());
  if (action === 'init') {
    const passphrase = io.env[CA_PASSPHRASE_ENV];
    if (passphrase === undefined && !values['no-passphrase']) {
      throw new ConfigError(`ca init needs a passphrase in $${CA_PASSPHRASE_ENV}, or --no-passphrase for an unprotected key`);
    }
    if (passphrase !== undefined && values['no-passphrase']) throw new ConfigError(`--no-passphrase with $${CA_PASSPHRASE_ENV} set: choose one`);
    const made = await initAuthority(dir, { ...(passphrase !== undefined ? { passphrase } : {}), ...(values.force ? { force: true } : {}) });
    if (values.json) printJson(io, { dir, ...made });
    else io.stdout.write(`created ${made.encrypted ? 'a passphrase-protected' : 'an UNPROTECTED'} CA in ${dir} (${made.fingerprint})\n${made.publicLine}\n`);
    return ExitCode.OK;
  }
  if (action === 'show') {
    const { publicLine: line } = await readAuthorityPublic(dir);
    if (values.principals !== undefined && !/^[A-Za-z0-9._@-]+(,[A-Za-z0-9._@-]+)*$/.test(values.principals)) {
      throw new ConfigError('--principals must be a comma-separated list of names');
    }
    const install = `echo '${line}' | mint-gateway install --key - --cert-authority${values.principals ? ` --principals ${values.principals}` : ''}`;
    if (values.json) printJson(io, { dir, publicKey: line, install });
    else io.stdout.write(`${line}\n\non the site, as the account MInt logs in as:\n  ${install}\n`);
    return ExitCode.OK;
  }
  throw usageError(caSpec, action === undefined ? 'missing ACTION' : `unknown ACTION ${JSON.stringify(action)} (init or show)`);
}
