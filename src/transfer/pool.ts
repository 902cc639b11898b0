/**
 * Connections shared by the jobs of one process, per host. A job leases a place on a connection;
 * a connection takes as many jobs as it may open channels (each job uses one channel at a time), so
 * 64 jobs to one host need ceil(64 / MaxSessions) connections, not 64. New handshakes to one host
 * are made one at a time and spaced apart: a burst of logins looks like an attack to a site's sshd
 * (MaxStartups drops them, fail2ban bans the address).
 */
import type { ResolvedHost } from '../config/resolved-host.js';
import type { Connection } from '../connection/connect.js';
import { RshBridge } from './rsh-bridge.js';

export interface PooledLink {
  connection: Connection;
  bridge: RshBridge;
}

export interface Lease extends PooledLink {
  /** Gives the place back; the connection closes once no job uses it. */
  release: () => void;
}

export type Dial = () => Promise<Connection>;

interface Entry extends PooledLink {
  jobs: number;
}

interface HostState {
  entries: Entry[];
  /** Handshakes to this host run one after another. */
  dialing: Promise<unknown>;
  lastDialAt: number;
}

export interface PoolOptions {
  /** Least time between the starts of two handshakes to one host. */
  handshakeSpacingMs?: number;
}

export class ConnectionPool {
  private readonly hosts = new Map<string, HostState>();
  private readonly spacingMs: number;
  /** Handshakes made, for tests and benchmarks. */
  handshakes = 0;

  constructor(options: PoolOptions = {}) {
    this.spacingMs = options.handshakeSpacingMs ?? 50;
  }

  async acquire(host: ResolvedHost, dial: Dial): Promise<Lease> {
    const key = poolKey(host);
    let state = this.hosts.get(key);
    if (!state) {
      state = { entries: [], dialing: Promise.resolve(), lastDialAt: 0 };
      this.hosts.set(key, state);
    }
    const current = state;
    let entry = this.freePlace(current);
    if (!entry) {
      // Queue behind earlier handshakes; on our turn, a place may have come free.
      const turn = current.dialing.then(async () => {
        const free = this.freePlace(current);
        if (free) return free;
        const wait = current.lastDialAt + this.spacingMs - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        current.lastDialAt = Date.now();
        this.handshakes += 1;
        const connection = await dial();
        const bridge = await RshBridge.open(connection);
        const fresh: Entry = { connection, bridge, jobs: 0 };
        current.entries.push(fresh);
        connection.onClose(() => this.forget(current, fresh));
        return fresh;
      });
      current.dialing = turn.catch(() => undefined);
      entry = await turn;
    }
    const taken = entry;
    taken.jobs += 1;
    let released = false;
    return {
      connection: taken.connection,
      bridge: taken.bridge,
      release: () => {
        if (released) return;
        released = true;
        taken.jobs -= 1;
        if (taken.jobs === 0) this.retire(current, taken);
      },
    };
  }

  private freePlace(state: HostState): Entry | undefined {
    // Fill the busiest connection that still has room, so idle ones can close.
    return state.entries
      .filter((e) => !e.connection.closed && e.jobs < e.connection.capacity)
      .sort((a, b) => b.jobs - a.jobs)[0];
  }

  /** Out of the list first, so no new job takes a place on a connection that is closing. */
  private retire(state: HostState, entry: Entry): void {
    this.forget(state, entry);
    void entry.bridge.close().catch(() => undefined).then(() => entry.connection.close());
  }

  private forget(state: HostState, entry: Entry): void {
    const index = state.entries.indexOf(entry);
    if (index >= 0) state.entries.splice(index, 1);
  }
}

/** Jobs share a connection only when everything that decides who they talk to, and as whom, is equal. */
function poolKey(host: ResolvedHost): string {
  return JSON.stringify([
    host.user,
    host.hostname,
    host.port,
    host.proxyJump,
    host.proxyCommand,
    host.identityFiles,
    host.agent,
    host.knownHostsFiles,
    host.hostKeyFingerprints,
    host.hostKeyAlias,
    host.certificateFiles,
    // A per-job certificate's connection belongs to its job alone.
    host.jobCredential?.certificate.toString('base64'),
  ]);
}

/** The pool runRemote uses unless given another. */
export const defaultPool = new ConnectionPool();
