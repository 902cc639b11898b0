/** Everything needed to reach one host, after profiles, ~/.ssh/config and defaults are merged. */
import type { KeyObject } from 'node:crypto';

export type CleanupPolicy = 'always' | 'on-success' | 'never';

export interface RetryPolicy {
  /** Further attempts after the first; 0 turns retrying off. */
  retries: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
  /** Upper bound on the time spent retrying one step. */
  maxRetryTimeMs: number;
}

export interface ResolvedHost {
  /** The name the caller used: a profile name or an ~/.ssh/config alias. */
  name: string;
  hostname: string;
  port: number;
  user: string;
  identityFiles: string[];
  /** Explicit identity files only (ssh's IdentitiesOnly): do not offer agent keys. */
  identitiesOnly: boolean;
  /** ssh-agent socket, or undefined for none. */
  agent: string | undefined;
  knownHostsFiles: string[];
  /** Pinned SHA256 fingerprints; when given, they replace known_hosts. */
  hostKeyFingerprints: string[];
  strictHostKeyChecking: 'yes' | 'accept-new';
  /** The name looked up in known_hosts (ssh's HostKeyAlias), default hostname. */
  hostKeyAlias: string;
  /** Already %-expanded. */
  proxyCommand: string | undefined;
  /** `[user@]host[:port]`, comma-separated hops. */
  proxyJump: string | undefined;
  connectTimeoutMs: number;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  cleanup: CleanupPolicy;
  retry: RetryPolicy;
  /** ssh_config's HashKnownHosts: a key recorded by accept-new is written hashed (`|1|salt|hash`). */
  hashKnownHosts: boolean;
  /** User certificates to offer: the profile's certificateFile, then ssh_config's CertificateFile. */
  certificateFiles: string[];
  /** `certificate: per-job`: each job logs in with a fresh key and a certificate MInt's CA signs for it. */
  perJobCertificate?: PerJobCertificatePolicy;
  /** The job's own key and certificate (in memory only), set once per job by runRemote/attach. */
  jobCredential?: JobCredential;
  /** `mode: pull`: jobs go through a hub, which the site's agent polls (no SSH at all). */
  pull?: PullTarget;
  /** Who read ssh_config: OpenSSH itself, this package's parser (the fallback), or nobody (`sshConfig: false`). */
  resolvedBy: 'ssh -G' | 'built-in' | 'none';
  /** Why the built-in parser was used instead of ssh -G. */
  resolvedByWhy?: string;
}

export interface PullTarget {
  /** The hub's https:// URL. */
  hub: string;
  /** The site whose agent runs the jobs. */
  site: string;
  /** The submit token's file (`hub init` writes DATA/submit.token). */
  tokenFile: string;
  /** The CA that signed the hub's certificate (`hub init`'s DATA/ca.pem); default the system's. */
  ca?: string;
}

export interface PerJobCertificatePolicy {
  /** The CA's directory (`mint-ssh-exec ca init`): `ca` (private key) and `ca.pub`. */
  authority: string;
  /** The principal the certificate names; the site's principals="..." must list it. */
  principal: string;
  /** sshd's source-address critical option (addresses/CIDR, comma-separated): where MInt connects from. */
  sourceAddress?: string;
}

export interface JobCredential {
  /** The ephemeral ed25519 private key: never written anywhere. */
  privateKey: KeyObject;
  /** The OpenSSH certificate blob for it. */
  certificate: Buffer;
}

export const DEFAULTS = {
  port: 22,
  connectTimeoutMs: 20_000,
  // Detects a dead peer in about 30 s (3 unanswered keepalives 10 s apart) rather than never.
  keepaliveIntervalMs: 10_000,
  keepaliveCountMax: 3,
  cleanup: 'on-success' as CleanupPolicy,
  retry: { retries: 5, minTimeoutMs: 500, maxTimeoutMs: 15_000, maxRetryTimeMs: 300_000 },
};
