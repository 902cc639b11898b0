/**
 * Authentication in OpenSSH's order: agent keys first (unless IdentitiesOnly), then each identity
 * file. Keys that cannot be used (missing, encrypted without an agent) are skipped and named in the
 * final error, so "permission denied" always says what was tried.
 */
import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, AuthHandlerMiddleware } from 'ssh2';
import type { ResolvedHost } from '../config/resolved-host.js';

export interface AuthPlan {
  handler: AuthHandlerMiddleware;
  /** Human-readable list of what was offered, for error messages. */
  tried: string[];
  skipped: string[];
}

export function planAuth(host: ResolvedHost): AuthPlan {
  const methods: { label: string; method: AnyAuthMethod }[] = [];
  const skipped: string[] = [];
  if (host.agent && !host.identitiesOnly) {
    methods.push({ label: `ssh-agent (${host.agent})`, method: { type: 'agent', username: host.user, agent: host.agent } });
  }
  for (const file of host.identityFiles) {
    let text: Buffer;
    try {
      text = readFileSync(file);
    } catch {
      skipped.push(`${file} (not readable)`);
      continue;
    }
    const parsed = ssh2.utils.parseKey(text);
    if (parsed instanceof Error) {
      skipped.push(`${file} (${/encrypted|passphrase/i.test(parsed.message) ? 'encrypted: load it into ssh-agent' : parsed.message})`);
      continue;
    }
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (!key) continue;
    methods.push({ label: file, method: { type: 'publickey', username: host.user, key } });
  }
  const tried: string[] = [];
  let next = 0;
  const handler: AuthHandlerMiddleware = (_left, _partial, callback) => {
    const entry = methods[next++];
    if (!entry) {
      callback(false as unknown as AnyAuthMethod);
      return;
    }
    tried.push(entry.label);
    callback(entry.method);
  };
  return { handler, tried, skipped };
}
