/**
 * Host key verification, refusing by default: a key that is not known, or differs from what is
 * known, stops the connection with an error that says how to check and fix it.
 */
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { HostKeyError } from '../errors.js';
import { checkKnownHosts, fingerprintSha256, keyTypeOf, knownHostsLine } from '../config/known-hosts.js';
import { knownHostsName } from '../config/openssh.js';
import type { ResolvedHost } from '../config/resolved-host.js';

export function verifyHostKey(host: ResolvedHost, keyBlob: Buffer, onRecorded?: (file: string) => void): HostKeyError | undefined {
  const fingerprint = fingerprintSha256(keyBlob);
  const type = keyTypeOf(keyBlob);
  const context = { host: host.name };
  const keyscan = `ssh-keyscan -p ${host.port} ${host.hostname}`;

  if (host.hostKeyFingerprints.length > 0) {
    if (host.hostKeyFingerprints.includes(fingerprint)) return undefined;
    return new HostKeyError(
      'HOST_KEY_MISMATCH',
      `host key of ${host.name} (${type} ${fingerprint}) matches none of the pinned fingerprints (${host.hostKeyFingerprints.join(', ')})`,
      { ...context, hint: 'if the site really changed its host key, confirm the new fingerprint with its admin and update hostKeyFingerprint in the profile' },
    );
  }

  for (const file of host.knownHostsFiles) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const check = checkKnownHosts(text, host.hostKeyAlias, host.port, keyBlob);
    if (check.status === 'match') return undefined;
    if (check.status === 'revoked') {
      return new HostKeyError('HOST_KEY_MISMATCH', `host key of ${host.name} (${fingerprint}) is marked @revoked in ${file}:${check.line}`, context);
    }
    if (check.status === 'mismatch') {
      return new HostKeyError(
        'HOST_KEY_MISMATCH',
        `HOST KEY CHANGED for ${host.name}: it offered ${type} ${fingerprint}, but ${file}:${check.line} holds ${check.knownType} ${check.knownFingerprint}. This can be an attack; nothing was sent.`,
        {
          ...context,
          hint: `confirm the new key with the site's admin; if it is right, remove the old entry with: ssh-keygen -R '${lookupName(host)}' -f ${file}`,
        },
      );
    }
  }

  if (host.strictHostKeyChecking === 'accept-new') {
    const file = host.knownHostsFiles[0];
    if (file) {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      appendFileSync(file, `${knownHostsLine(host.hostKeyAlias, host.port, keyBlob, host.hashKnownHosts)}\n`, { mode: 0o600 });
      onRecorded?.(file);
      return undefined;
    }
  }
  return new HostKeyError(
    'HOST_KEY_UNKNOWN',
    `host key of ${host.name} is not known: it offered ${type} ${fingerprint} (looked in ${host.knownHostsFiles.join(', ') || 'no known_hosts file'})`,
    {
      ...context,
      hint: `compare ${fingerprint} with the site admin's \`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub\`, then either add it with \`${keyscan} >> ${host.knownHostsFiles[0] ?? '~/.ssh/known_hosts'}\` or pin it with \`hostKeyFingerprint: ${fingerprint}\` in the host profile`,
    },
  );
}

function lookupName(host: ResolvedHost): string {
  return knownHostsName(host.hostKeyAlias, host.port);
}
