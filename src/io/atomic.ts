import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Write a file so that readers only ever see the old content or the complete new content:
 * write a temp file beside the target, fsync it, then rename over the target. A crash midway
 * leaves at most a stray `*.tmp-*` file, never a half-written checkpoint or cache.
 */
export async function writeFileAtomic(
  target: string,
  write: (handle: fsp.FileHandle) => Promise<void>,
): Promise<void> {
  const dir = path.dirname(target);
  await fsp.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const handle = await fsp.open(tmp, 'w');
  try {
    await write(handle);
    await handle.sync();
  } catch (e) {
    await handle.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await handle.close();
  try {
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

/** Atomic write of a whole string or buffer. */
export async function writeBytesAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await writeFileAtomic(target, async (h) => {
    await h.writeFile(data);
  });
}

/** Atomic write of pretty-printed JSON with a trailing newline. */
export async function writeJsonAtomic(target: string, value: unknown): Promise<void> {
  await writeBytesAtomic(target, JSON.stringify(value, null, 2) + '\n');
}
