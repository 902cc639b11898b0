// Our side of the comparisons, from the built package only (dist/): runRemote for whole jobs, and
// for transfers and per-verb costs the same pieces runRemote uses (ssh2 connection, rsync bridge,
// gateway client), so a transfer can be timed without starting a job.
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url));

export function distReady() {
  return ['index.js', 'connection/connect.js', 'transfer/rsh-bridge.js', 'transfer/rsync.js', 'job/gateway-client.js'].every((f) =>
    existsSync(DIST + f),
  );
}

let modules;
export async function load() {
  if (modules) return modules;
  const [index, sandboxEntry, siteEntry, connectMod, bridgeMod, gatewayMod, sandboxMod] = await Promise.all([
    import(new URL('../../dist/index.js', import.meta.url).href),
    import(new URL('../../dist/sandbox/index.js', import.meta.url).href),
    import(new URL('../../dist/site/index.js', import.meta.url).href),
    import(new URL('../../dist/connection/connect.js', import.meta.url).href),
    import(new URL('../../dist/transfer/rsh-bridge.js', import.meta.url).href),
    import(new URL('../../dist/gateway/client.js', import.meta.url).href),
    import(new URL('../../dist/sandbox/sandbox.js', import.meta.url).href),
  ]);
  modules = {
    runRemote: index.runRemote,
    startSandbox: sandboxEntry.startSandbox,
    resolveHost: index.resolveHost,
    installGateway: siteEntry.installGateway,
    connect: connectMod.connect,
    RshBridge: bridgeMod.RshBridge,
    GatewayClient: gatewayMod.GatewayClient,
    readBanner: sandboxMod.readBanner,
    sshdConfig: sandboxMod.sshdConfig,
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
