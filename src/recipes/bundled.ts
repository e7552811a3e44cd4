/**
 * What `unime recipes list|validate` needs: the bundled recipe files and a per-file validation
 * report that never throws for a bad recipe.
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { isUnimeError, type UnimeError } from '../errors.js';
import { loadRecipe, type LoadOptions } from './load.js';
import { listBundledRecipes } from './locations.js';
import { isPlainObject } from './source.js';

export { bundledRecipesDir, listBundledRecipes } from './locations.js';

export interface RecipeFileReport {
  file: string;
  ok: boolean;
  /** The RecipeError (or other UnimeError) when not ok; print `error.message`. */
  error?: UnimeError;
  /** The recipe name (best effort when the recipe is invalid). */
  name?: string;
  description?: string;
  stages: Array<{ name: string; kind: string }>;
}

/** Validate one recipe file. Bad recipes come back as `ok: false`; only internal faults throw. */
export async function validateRecipeFile(file: string, overrides: readonly string[] = [], opts: LoadOptions = {}): Promise<RecipeFileReport> {
  try {
    const { recipe } = await loadRecipe(file, overrides, opts);
    return {
      file,
      ok: true,
      name: recipe.name,
      description: recipe.description,
      stages: recipe.stages.map((s) => ({ name: s.name, kind: s.kind })),
    };
  } catch (e) {
    if (!isUnimeError(e)) throw e;
    return { file, ok: false, error: e, ...(await bestEffortOutline(file)) };
  }
}

/** Name and stages read loosely from a recipe that does not validate. */
async function bestEffortOutline(file: string): Promise<Pick<RecipeFileReport, 'name' | 'description' | 'stages'>> {
  try {
    const raw: unknown = parse(await readFile(file, 'utf8'), { maxAliasCount: 100 });
    if (!isPlainObject(raw)) return { stages: [] };
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    const stages = Array.isArray(raw.stages)
      ? raw.stages.filter(isPlainObject).map((s) => ({ name: str(s.name) ?? '?', kind: str(s.kind) ?? '?' }))
      : [];
    return { name: str(raw.name), description: str(raw.description), stages };
  } catch {
    return { stages: [] };
  }
}

/** Validate every bundled recipe. */
export async function validateBundledRecipes(opts: LoadOptions = {}): Promise<RecipeFileReport[]> {
  const out: RecipeFileReport[] = [];
  for (const f of listBundledRecipes()) out.push(await validateRecipeFile(f, [], opts));
  return out;
}
