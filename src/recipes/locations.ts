import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedRoot: string | undefined;

/** The package root (holds package.json and recipes/), found from this module's location. */
function packageRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (path.basename(dir) !== 'dist' && existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'recipes'))) {
      cachedRoot = dir;
      return dir;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('unime: cannot find the package root (package.json beside recipes/)');
    dir = up;
  }
}

/** Absolute path of the bundled recipes folder. */
export function bundledRecipesDir(): string {
  return path.join(packageRoot(), 'recipes');
}

/** Absolute paths of the bundled recipes (recipes/*.yaml), sorted by file name. */
export function listBundledRecipes(): string[] {
  const dir = bundledRecipesDir();
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => path.join(dir, f));
}
