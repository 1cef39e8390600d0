/** Crash-safe file writing: write under a temporary name, fsync, then rename into place. */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';

/** A temporary name beside `file` that no reader ever takes for a finished file. */
export function tempName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${Date.now().toString(36)}`);
}

/** Makes a rename (or a new file) in `dir` durable. */
export function fsyncDir(dir: string): void {
  let fd = -1;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/**
 * Writes `file` through `fill(write)`, which may call `write(bytes)` any number of times. Only a
 * complete, fsynced file appears under the final name; on error the temporary file is removed.
 */
export function writeAtomically(file: string, fill: (write: (bytes: Uint8Array) => void) => void): void {
  const tmp = tempName(file);
  const fd = openSync(tmp, 'wx');
  let closed = false;
  try {
    fill((bytes) => {
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    });
    fsyncSync(fd);
    closeSync(fd);
    closed = true;
    renameSync(tmp, file);
  } catch (e) {
    if (!closed) closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(path.dirname(file));
}

export function writeFileAtomically(file: string, text: string): void {
  writeAtomically(file, (write) => write(Buffer.from(text, 'utf8')));
}
