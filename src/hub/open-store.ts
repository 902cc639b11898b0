/** The hub's store from `--store`: SQLite in DATA (the default) or PostgreSQL (several replicas). */
import { PostgresStore } from './store-postgres.js';
import { SqliteStore, type HubStore, type StoreSpec } from './store.js';

/** `events` false: a one-shot command that never waits, so it needs no events from other hubs. */
export async function openStore(data: string, spec: StoreSpec = { kind: 'sqlite' }, events = true): Promise<HubStore> {
  if (spec.kind === 'sqlite') return new SqliteStore(data);
  return PostgresStore.open(data, spec.url, events);
}
