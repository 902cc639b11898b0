/**
 * Whether a Docker engine is reachable, asked the way testcontainers itself asks, so that the
 * answer matches what a testcontainers-backed sandbox would meet.
 */
export async function dockerAvailable(): Promise<{ available: boolean; reason: string }> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const client = await getContainerRuntimeClient();
    return { available: true, reason: `Docker ${client.info.containerRuntime.serverVersion}` };
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] ?? '' : String(error);
    return { available: false, reason: `no Docker engine: ${message}` };
  }
}
