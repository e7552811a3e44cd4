import type { Argv } from 'yargs';
import * as path from 'node:path';
import { handler, formatTable } from './common.js';
import { loadEngines } from './engines.js';
import { listBundledRecipes, validateRecipeFile, loadRecipe, recipeToYaml, listStageKinds, type RecipeFileReport } from '../recipes/index.js';
import { UnimeError } from '../errors.js';

export const command = 'recipes <action> [files..]';
export const describe = 'List, validate or show recipes: list | validate | show | kinds';
export function builder(y: Argv) {
  return y
    .positional('action', { choices: ['list', 'validate', 'show', 'kinds'] as const, demandOption: true })
    .positional('files', { type: 'string', array: true, describe: 'recipe files (validate: default all bundled; show: the file, then key=value overrides)' })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON' })
    .example('$0 recipes list', 'the bundled recipes and their stages')
    .example('$0 recipes validate my.yaml', 'check a recipe of your own')
    .example('$0 recipes show recipes/quickstart.yaml stages.1.train.lr=1e-3', 'the recipe as it would run');
}

interface Args {
  action: 'list' | 'validate' | 'show' | 'kinds';
  files?: string[];
  json: boolean;
}

const rel = (f: string) => path.relative(process.cwd(), f) || f;

function reportJson(r: RecipeFileReport) {
  return { file: rel(r.file), ok: r.ok, name: r.name, description: r.description, stages: r.stages, error: r.error?.message };
}

const handle = handler(async (args: Args) => {
  const files = args.files ?? [];
  switch (args.action) {
    case 'kinds': {
      await loadEngines();
      const kinds = listStageKinds();
      if (args.json) process.stdout.write(JSON.stringify(kinds.map((k) => ({ kind: k.kind, description: k.description, engine: !!k.run })), null, 2) + '\n');
      else process.stdout.write(formatTable(['kind', 'engine', 'description'], kinds.map((k) => [k.kind, k.run ? 'yes' : 'not in this build', k.description])) + '\n');
      return;
    }
    case 'show': {
      const [file, ...overrides] = files;
      if (!file) throw new UnimeError('`recipes show` needs a recipe file', { fix: 'unime recipes show recipes/quickstart.yaml [key=value ...]' });
      const loaded = await loadRecipe(file, overrides);
      process.stdout.write(args.json ? JSON.stringify(loaded.recipe, null, 2) + '\n' : recipeToYaml(loaded));
      return;
    }
    case 'list':
    case 'validate': {
      const targets = files.length > 0 ? files : listBundledRecipes();
      if (args.action === 'list' && files.length > 0) throw new UnimeError('`recipes list` takes no files', { fix: 'use `unime recipes validate <files>`' });
      const reports: RecipeFileReport[] = [];
      for (const f of targets) reports.push(await validateRecipeFile(f));
      if (args.json) {
        process.stdout.write(JSON.stringify(reports.map(reportJson), null, 2) + '\n');
      } else if (args.action === 'list') {
        const rows = reports.map((r) => [rel(r.file), r.name ?? '?', r.stages.map((s) => `${s.name}:${s.kind}`).join(' -> '), r.ok ? 'ok' : 'INVALID']);
        process.stdout.write(formatTable(['file', 'name', 'stages', 'valid'], rows) + '\n');
      } else {
        for (const r of reports) {
          process.stdout.write(r.ok ? `ok       ${rel(r.file)} (${r.name}: ${r.stages.length} stage${r.stages.length === 1 ? '' : 's'})\n` : `INVALID  ${rel(r.file)}\n`);
          if (r.error) process.stderr.write(`  ${r.error.message.replace(/\n/g, '\n  ')}\n`);
        }
      }
      const bad = reports.filter((r) => !r.ok).length;
      if (bad > 0) {
        if (!args.json) process.stderr.write(`${bad} of ${reports.length} recipe${reports.length === 1 ? '' : 's'} invalid\n`);
        process.exitCode = 2;
      }
      return;
    }
  }
});
export { handle as handler };
