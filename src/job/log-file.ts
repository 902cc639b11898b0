/**
 * The program's log, kept on disk as it arrives instead of in memory. A log held whole crashed `run`
 * past ~512 MiB (V8's string limit, 0x1fffffe8 characters) after the job had succeeded and been
 * removed remotely, and a 200 MiB log cost 820 MB RSS; streamed to a file, memory stays bounded by
 * one chunk plus the tail kept for `result.log`, whatever the log's size.
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { copyFile, link, rename, rm } from 'node:fs/promises';

/** How much of the log's end `result.log` keeps: enough for any error message, bounded for any log. */
export const LOG_TAIL_BYTES = 1024 * 1024;

export class LogFile {
  private fd: number | undefined;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  /** Bytes written so far: the byte offset a resumed `logs` starts at. */
  bytes = 0;

  /** Opens `partPath` afresh (truncating what an earlier attempt of this process left there). */
  constructor(readonly partPath: string) {
    this.fd = openSync(partPath, 'w', 0o644);
  }

  /** Synchronous, so no chunk waits in memory for the disk: the SSH window waits instead. */
  write(chunk: Buffer): void {
    if (this.fd === undefined) throw new Error('log file already closed');
    for (let done = 0; done < chunk.length; ) done += writeSync(this.fd, chunk, done);
    this.bytes += chunk.length;
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    while (this.tail.length > 1 && this.tailBytes - (this.tail[0]?.length ?? 0) >= LOG_TAIL_BYTES) {
      this.tailBytes -= this.tail.shift()?.length ?? 0;
    }
  }

  /** On disk for good (fsync) before anything may remove the remote copy. */
  close(): void {
    if (this.fd === undefined) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = undefined;
  }

  /** The log's last LOG_TAIL_BYTES at most, from a character boundary (the whole log when smaller). */
  tailText(): string {
    let bytes = Buffer.concat(this.tail);
    if (bytes.length > LOG_TAIL_BYTES) {
      let start = bytes.length - LOG_TAIL_BYTES;
      // Skip UTF-8 continuation bytes (10xxxxxx): never start inside a character.
      while (start < bytes.length && ((bytes[start] ?? 0) & 0xc0) === 0x80) start++;
      bytes = bytes.subarray(start);
    }
    return bytes.toString('utf8');
  }

  /**
   * Gives the log its final name, keeping the part file as a second link: a program's own file of
   * the same name, downloaded afterwards, must not replace the log (`settle` puts it back).
   */
  async publish(path: string): Promise<void> {
    this.close();
    const staged = `${this.partPath}.link`;
    await rm(staged, { force: true });
    // A file system without hard links still gets the log, as a copy.
    await link(this.partPath, staged).catch(() => copyFile(this.partPath, staged));
    await rename(staged, path);
  }

  /** After the download: the log again under `path` if the program's own file took the name. */
  async settle(path: string, replaced: boolean): Promise<void> {
    if (replaced) await rename(this.partPath, path);
    else await rm(this.partPath, { force: true });
  }

  /** A job that ends in an error keeps no partial log here: the remote copy is whole. */
  async discard(): Promise<void> {
    this.close();
    await rm(this.partPath, { force: true });
  }
}
