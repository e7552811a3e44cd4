/**
 * Loading a recipe: read the file, parse YAML with positions, apply command line overrides, fill
 * the output_dir defaults, interpolate `${...}`, validate against the schemas. Every failure is a
 * RecipeError naming the file (and line, column, field, override where they apply).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import './kinds.js';
import { RecipeError } from './errors.js';
import { interpolate } from './interpolate.js';
import { listBundledRecipes } from './locations.js';
import { applyOverrides, type AppliedOverride } from './overrides.js';
import { didYouMean, isPrefix, type Path } from './paths.js';
import type { Recipe } from './schema.js';
import { getOwn, hasOwn, isPlainObject, MAX_BYTES, parseRecipeYaml, setOwn } from './source.js';
import { validateTree } from './validate.js';

export interface LoadedRecipe {
  /** The recipe file as the user named it (`<recipe>` for text given directly). */
  file: string;
  /** Validated: defaults filled, interpolation done. */
  recipe: Recipe;
  /** The overrides applied, as typed. */
  overrides: string[];
}

export interface LoadOptions {
  /** Environment for `${env:...}`; default process.env. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** Where the output dirs go when a recipe does not say: `runs/<name>` and `<output_dir>/<stage name>`. */
function insertOutputDirDefaults(tree: Record<string, unknown>): void {
  if (!hasOwn(tree, 'output_dir') && hasOwn(tree, 'name')) setOwn(tree, 'output_dir', 'runs/${name}');
  const stages = getOwn(tree, 'stages');
  if (!hasOwn(tree, 'output_dir') || !Array.isArray(stages)) return;
  stages.forEach((s, i) => {
    if (isPlainObject(s) && hasOwn(s, 'name') && !hasOwn(s, 'output_dir')) setOwn(s, 'output_dir', `\${output_dir}/\${stages.${i}.name}`);
  });
}

/** Load recipe text (no file access). `file` is only used in messages. */
export function parseRecipe(
  text: string,
  opts: { file?: string; overrides?: readonly string[]; env?: Readonly<Record<string, string | undefined>> } = {},
): LoadedRecipe {
  const file = opts.file ?? '<recipe>';
  const overrides = [...(opts.overrides ?? [])];
  const { value, index } = parseRecipeYaml(text, file);
  const tree = value as Record<string, unknown>;
  const applied: AppliedOverride[] = applyOverrides(tree, overrides, file);
  insertOutputDirDefaults(tree);
  const overrideFor = (p: Path): string | undefined => {
    let hit: string | undefined;
    for (const o of applied) if (isPrefix(o.path, p)) hit = o.text;
    return hit;
  };
  const origins = interpolate(tree, {
    file,
    env: opts.env ?? process.env,
    locate: (p) => index.locate(p),
    overrideFor,
    inFile: (p) => index.has(p),
  });
  const recipe = validateTree(tree, { file, index, overrides: applied, origins });
  return { file, recipe, overrides };
}

/** Read a recipe file, with clear errors for a missing file, a directory or an unreadable file. */
export async function readRecipeText(file: string): Promise<string> {
  let st;
  try {
    st = await fsp.stat(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new RecipeError('recipe file not found', { file, fix: notFoundFix(file) });
    }
    throw new RecipeError(`cannot read the recipe file (${code ?? String(e)})`, { file });
  }
  if (st.isDirectory()) {
    let inside: string[] = [];
    try {
      inside = (await fsp.readdir(file)).filter((f) => /\.ya?ml$/.test(f)).sort();
    } catch {
      // an unreadable directory is still a directory
    }
    throw new RecipeError('this is a directory, not a recipe file', {
      file,
      fix: inside.length > 0 ? `name one of the recipes in it: ${inside.map((f) => path.join(file, f)).join(', ')}` : 'name a .yaml recipe file',
    });
  }
  if (!st.isFile()) throw new RecipeError('this is not a regular file', { file, fix: 'name a .yaml recipe file' });
  if (st.size > MAX_BYTES) throw new RecipeError(`the file is larger than ${MAX_BYTES >> 10} KiB; a recipe is a short YAML file`, { file });
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new RecipeError(`cannot read the recipe file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file });
  }
}

function notFoundFix(file: string): string {
  let bundled: string[] = [];
  try {
    bundled = listBundledRecipes();
  } catch {
    // not fatal: no suggestion
  }
  const base = path.basename(file).replace(/\.ya?ml$/, '');
  const names = bundled.map((f) => path.basename(f).replace(/\.ya?ml$/, ''));
  const near = names.includes(base) ? base : didYouMean(base, names);
  const rel = (n: string) => path.relative(process.cwd(), bundled[names.indexOf(n)]!) || n;
  if (near !== undefined) return `did you mean the bundled recipe ${rel(near)}?`;
  return names.length > 0 ? `bundled recipes: ${names.map(rel).join(', ')} (\`unime recipes list\`)` : 'check the path';
}

/** Read, override, interpolate and validate a recipe file. */
export async function loadRecipe(file: string, overrides: readonly string[] = [], opts: LoadOptions = {}): Promise<LoadedRecipe> {
  const text = await readRecipeText(file);
  return parseRecipe(text, { file, overrides, env: opts.env });
}

/** Strings in a resolved recipe are final: escape `${` so reading the YAML back gives the same values. */
function escapeTemplates(v: unknown): unknown {
  if (typeof v === 'string') return v.replaceAll('${', () => '$${');
  if (Array.isArray(v)) return v.map(escapeTemplates);
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) setOwn(out, k, escapeTemplates(v[k]));
    return out;
  }
  return v;
}

/** The resolved recipe as YAML that loads back to the same recipe (what `recipe.resolved.yaml` holds). */
export function recipeToYaml(loaded: LoadedRecipe): string {
  const head = [
    `# Resolved recipe: defaults filled, overrides applied, \${...} interpolated.`,
    `# source: ${loaded.file}`,
    ...(loaded.overrides.length > 0 ? [`# overrides: ${loaded.overrides.join(' ')}`] : []),
  ]
    .map((l) => l.replace(/[\r\n]+/g, ' '))
    .join('\n');
  return `${head}\n${stringify(escapeTemplates(loaded.recipe), { lineWidth: 0 })}`;
}
