// Our side of the comparisons, from the built package only. Whole jobs, the sandbox and the host
// resolution go through the package's public entries, imported by name as a consumer does
// ('mint-ssh-exec', 'mint-ssh-exec/sandbox': package.json "exports", the bundle in dist/bundle/).
// The per-verb table and the transfer rows time pieces below the public API (one ssh2 connection,
// its rsync bridge and the gateway client, the same ones runRemote uses), which no entry exports
// on purpose: those come from dist/ by path, and only they (plus the sandbox's sshd helpers that
// bench/lib/plain-user.mjs reuses for its own sshd).
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url));
const INTERNALS = ['connection/connect.js', 'transfer/rsh-bridge.js', 'gateway/client.js', 'sandbox/sandbox.js', 'transfer/inline.js'];

export function distReady() {
  return ['bundle/index.mjs', 'bundle/sandbox.mjs', 'bundle/mint.cjs', ...INTERNALS].every((f) => existsSync(DIST + f));
}

let modules;
export async function load() {
  if (modules) return modules;
  const internal = (f) => import(new URL(`../../dist/${f}`, import.meta.url).href);
  const [index, sandboxEntry, siteEntry, connectMod, bridgeMod, gatewayMod, sandboxMod, inlineMod] = await Promise.all([
    import('mint-ssh-exec'),
    import('mint-ssh-exec/sandbox'),
    import('mint-ssh-exec/site'),
    ...INTERNALS.map(internal),
  ]);
  modules = {
    runRemote: index.runRemote,
    resolveHost: index.resolveHost,
    startSandbox: sandboxEntry.startSandbox,
    startPullSandbox: sandboxEntry.startPullSandbox,
    connect: connectMod.connect,
    RshBridge: bridgeMod.RshBridge,
    GatewayClient: gatewayMod.GatewayClient,
    installGateway: siteEntry.installGateway,
    readBanner: sandboxMod.readBanner,
    sshdConfig: sandboxMod.sshdConfig,
    inlineUpload: inlineMod.inlineUpload,
  };
  return modules;
}

/** One ssh2 connection with its rsync bridge and gateway client: what a job holds. */
export async function openLink(inlineHost) {
  const m = await load();
  const host = await m.resolveHost(inlineHost);
  const t0 = performance.now();
  const connection = await m.connect(host);
  const bridge = await m.RshBridge.open(connection);
  const connectMs = performance.now() - t0;
  return {
    host,
    connection,
    bridge,
    gateway: new m.GatewayClient(connection, bridge),
    connectMs,
    async close() {
      await bridge.close().catch(() => undefined);
      connection.close();
    },
  };
}

/**
 * runRemote's upload, timed like `rsync -e ssh` is: from opening the connection to the end of the
 * transfer (connect + bridge + the upload function runRemote calls). Returns both parts.
 */
export async function timedUpload(inlineHost, inputs, jobId = randomUUID()) {
  const m = await load();
  const t0 = performance.now();
  const link = await openLink(inlineHost);
  try {
    const result = await link.gateway.put(inputs, { jobId });
    return { jobId, totalMs: performance.now() - t0, connectMs: link.connectMs, uploadMs: result.durationMs, files: result.files };
  } finally {
    await link.close();
  }
}
