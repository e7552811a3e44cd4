import * as path from 'node:path';
import * as os from 'node:os';
import { existsSync, promises as fsp } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Tests run compiled from dist/test/...; the repository root is the nearest package.json outside dist/. */
function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!(existsSync(path.join(dir, 'package.json')) && path.basename(dir) !== 'dist')) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('test helpers: repository root not found');
    dir = up;
  }
  return dir;
}

export const repoRoot = findRoot();

/** Path of a committed fixture under test/fixtures. */
export function fixture(...parts: string[]): string {
  return path.join(repoRoot, 'test', 'fixtures', ...parts);
}

/** A fresh temporary directory; call cleanup() when done. */
export async function tempDir(prefix = 'unime-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fsp.rm(dir, { recursive: true, force: true }) };
}
