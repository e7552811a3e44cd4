import type { Argv } from 'yargs';
import { handler } from './common.js';
import { loadEngines } from './engines.js';
import { loadRecipe, runRecipe, planRecipe, formatPlan } from '../recipes/index.js';

export const command = 'train <recipe> [overrides..]';
export const describe = "Run a recipe's stages in order";
export function builder(y: Argv) {
  return y
    .positional('recipe', { type: 'string', demandOption: true, describe: 'recipe YAML file, e.g. recipes/quickstart.yaml' })
    .positional('overrides', { type: 'string', array: true, describe: 'key.path=value overrides, e.g. stages.stage2.train.lr=2e-5' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'validate and print the plan without running anything' })
    .option('only', { type: 'string', array: true, describe: 'run only these stages (repeat it or separate with commas: --only hardneg,eval-stage2)' })
    .option('from', { type: 'string', describe: 'start at this stage (earlier ones must be complete)' })
    .option('force', { type: 'boolean', default: false, describe: 'rerun stages that already completed' })
    .option('device', { type: 'string', choices: ['auto', 'cpu', 'native', 'cuda'], describe: "override the recipe's device" })
    .option('seed', { type: 'number', describe: "override the recipe's seed" })
    .example('$0 train recipes/quickstart.yaml', 'the bundled end-to-end example')
    .example('$0 train recipes/unime-phi35v-stage2.yaml stages.0.train.max_steps=10 --dry-run', 'check an override');
}

interface Args {
  recipe: string;
  overrides?: string[];
  dryRun: boolean;
  only?: string[];
  from?: string;
  force: boolean;
  device?: string;
  seed?: number;
}

/**
 * --only's values: comma lists split (stage names hold no comma), and `key=value` words, which yargs
 * hands to an array option when overrides follow it (`--only hardneg stages.hardneg.train.lr=1e-3`),
 * given back to the overrides (stage names hold no "=" either).
 */
export function splitOnly(only: readonly string[] | undefined): { only: string[] | undefined; overrides: string[] } {
  if (only === undefined) return { only: undefined, overrides: [] };
  const words = only.flatMap((w) => String(w).split(',')).filter((w) => w !== '');
  return { only: words.filter((w) => !w.includes('=')), overrides: words.filter((w) => w.includes('=')) };
}

const handle = handler(async (args: Args) => {
  const selected = splitOnly(args.only);
  const overrides = [...(args.overrides ?? []), ...selected.overrides];
  if (args.device !== undefined) overrides.push(`device=${args.device}`);
  if (args.seed !== undefined) overrides.push(`seed=${args.seed}`);
  const loaded = await loadRecipe(args.recipe, overrides);
  await loadEngines();
  const opts = { only: selected.only, from: args.from, force: args.force };
  if (args.dryRun) {
    process.stdout.write(formatPlan(loaded, await planRecipe(loaded, opts)) + '\n');
    return;
  }
  const { initRuntime } = await import('../runtime/index.js');
  const { recipe } = loaded;
  await initRuntime({ device: recipe.device, precision: recipe.precision, seed: recipe.seed });
  await runRecipe(loaded, { ...opts, showPlan: true });
});
export { handle as handler };
