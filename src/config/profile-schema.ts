/**
 * The shape of `hosts.yaml`: named host profiles. Every field is optional and nothing is defaulted
 * here; the resolver layers ~/.ssh/config and defaults on top, so "unset" must stay visible.
 *
 * Each field carries one human phrase (`error`) for every way it can fail, so a bad port reads
 * "expected an integer from 1 to 65535" whether the value was a word, a fraction or too large.
 * load-profiles.ts turns these phrases into `file:line:col: path: expected …, got …` lines.
 */
import { z } from 'zod';

export const PROFILE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** What `ssh-keygen -lf` prints: unpadded base64 of a SHA-256 digest. */
export const FINGERPRINT_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;

// One ProxyJump hop, as OpenSSH accepts it: [ssh://][user@]host[:port], host possibly a [v6] literal.
const HOP = String.raw`(?:ssh://)?(?:[^@\s,/]+@)?(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?`;
export const PROXY_JUMP_PATTERN = new RegExp(`^${HOP}(?:,${HOP})*$`);
const JUMP = 'a jump host as [user@]host[:port], or several separated by commas';

function intBetween(min: number, max: number, error = `an integer from ${min} to ${max}`) {
  return z.int({ error }).min(min, { error }).max(max, { error });
}

function nonNegativeInt() {
  const error = 'an integer of 0 or more';
  return z.int({ error }).min(0, { error });
}

function text(error: string) {
  return z.string({ error }).min(1, { error });
}

function oneOrMany(item: z.ZodString, error: string) {
  return z.union([item, z.array(item)], { error });
}

const path = text('a file path');
const fingerprint = z.string().regex(FINGERPRINT_PATTERN, {
  error: 'a key fingerprint: "SHA256:" and 43 base64 characters, as printed by ssh-keygen -lf',
});

export const ProfileNameSchema = z.string().regex(PROFILE_NAME_PATTERN, {
  error: 'letters, digits, ".", "_" or "-", starting with a letter or digit',
});

export const RetrySchema = z.strictObject({
  retries: nonNegativeInt().optional(),
  minTimeoutMs: nonNegativeInt().optional(),
  maxTimeoutMs: nonNegativeInt().optional(),
  maxRetryTimeMs: nonNegativeInt().optional(),
});

export const HostProfileSchema = z.strictObject({
  hostname: text('a host name or address').optional(),
  port: intBetween(1, 65535).optional(),
  user: text('a user name').optional(),
  identityFile: oneOrMany(path, 'a file path or a list of file paths').optional(),
  knownHostsFile: oneOrMany(path, 'a file path or a list of file paths').optional(),
  // OpenSSH user certificates (`KEY-cert.pub`), offered before plain keys; ssh_config's CertificateFile adds to these.
  certificateFile: oneOrMany(path, 'a file path or a list of file paths').optional(),
  // `per-job`: every job gets a fresh in-memory key and a short certificate from MInt's CA (`mint-ssh-exec ca init`).
  certificate: z.enum(['per-job'], { error: '"per-job" (a fresh key and certificate for each job)' }).optional(),
  certificateAuthority: path.optional(),
  certificateSourceAddress: z
    .string({ error: 'addresses or CIDR blocks, comma-separated' })
    .regex(/^[0-9A-Fa-f.:/]+(,[0-9A-Fa-f.:/]+)*$/, { error: 'addresses or CIDR blocks, comma-separated' })
    .optional(),
  certificatePrincipal: text('a principal name').regex(/^[A-Za-z0-9._@-]+$/, { error: 'a principal name of letters, digits and ._@-' }).optional(),
  // A pinned key replaces known_hosts, so an empty list would pin nothing: require at least one.
  hostKeyFingerprint: z
    .union([fingerprint, z.array(fingerprint).min(1, { error: 'at least one fingerprint' })], {
      error: 'a key fingerprint or a list of them',
    })
    .optional(),
  // `yes` is already a string under YAML 1.2; `true` comes from YAML 1.1 habits or JSON-minded users.
  strictHostKeyChecking: z
    .preprocess((value) => (value === true ? 'yes' : value), z.enum(['yes', 'accept-new']))
    .optional(),
  proxyCommand: text('a command line').optional(),
  proxyJump: z.string({ error: JUMP }).regex(PROXY_JUMP_PATTERN, { error: JUMP }).optional(),
  sshConfig: z.union([z.boolean(), path], { error: 'true, false or the path of an ssh config file' }).optional(),
  agent: z.union([z.boolean(), path], { error: 'true, false or the path of an agent socket' }).optional(),
  connectTimeoutMs: intBetween(100, 600_000).optional(),
  keepaliveIntervalMs: intBetween(0, 600_000, 'an integer from 0 (off) to 600000').optional(),
  keepaliveCountMax: intBetween(1, 100).optional(),
  cleanup: z.enum(['always', 'on-success', 'never']).optional(),
  retry: RetrySchema.optional(),
  // Pull mode (issue 18): the site's agent polls a hub over HTTPS; no SSH, and no port on the site.
  mode: z.enum(['ssh', 'pull'], { error: '"ssh" (the default) or "pull" (through a hub)' }).optional(),
  hub: z.string({ error: 'an https:// URL' }).regex(/^https:\/\/[^\s/]+(\/.*)?$/, { error: 'an https:// URL' }).optional(),
  site: z.string({ error: 'a site name' }).regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, { error: 'a site name: letters, digits and ._-' }).optional(),
  hubTokenFile: path.optional(),
  hubCa: path.optional(),
});

export const ProfilesFileSchema = z.strictObject({
  // Names are checked beside the record, not as its key schema: zod skips the settings of a
  // badly named profile, and a user fixing the name should not then meet a second round of errors.
  hosts: z.record(z.string(), HostProfileSchema).superRefine(
    (hosts, ctx) => {
      for (const name of Object.keys(hosts)) {
        const result = ProfileNameSchema.safeParse(name);
        if (!result.success) {
          ctx.addIssue({ code: 'invalid_key', origin: 'record', issues: result.error.issues, input: name, path: [name] });
        }
      }
    },
    { when: ({ value }) => typeof value === 'object' && value !== null && !Array.isArray(value) },
  ),
});

export type HostProfile = z.infer<typeof HostProfileSchema>;
export type ProfilesFile = z.infer<typeof ProfilesFileSchema>;
