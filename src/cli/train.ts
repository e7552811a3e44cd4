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
    .option('only', { type: 'string', array: true, describe: 'run only these stages' })
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

const handle = handler(async (args: Args) => {
  const overrides = [...(args.overrides ?? [])];
  if (args.device !== undefined) overrides.push(`device=${args.device}`);
  if (args.seed !== undefined) overrides.push(`seed=${args.seed}`);
  const loaded = await loadRecipe(args.recipe, overrides);
  await loadEngines();
  const opts = { only: args.only, from: args.from, force: args.force };
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
