import type { Argv } from 'yargs';
import { handler } from './common.js';
import { formatBytes } from '../hub/progress.js';
import type { ExportDtype } from '../models/export.js';

export const command = 'export <model> <out>';
export const describe = 'Merge LoRA adapters into the base model and write a complete Hugging Face checkpoint';
export function builder(y: Argv) {
  return y
    .positional('model', { type: 'string', describe: 'base checkpoint directory or Hub id', demandOption: true })
    .positional('out', { type: 'string', describe: 'output directory (must not exist or be empty, unless --force)', demandOption: true })
    .option('adapter', { type: 'string', array: true, describe: 'adapter dir or training stage output dir; repeat to merge several, in order' })
    .option('dtype', { type: 'string', choices: ['float32', 'bfloat16', 'float16'], describe: 'store floating-point weights in this dtype (default: as in the source)' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing non-empty output directory' })
    .option('json', { type: 'boolean', default: false, describe: 'print the result as JSON' });
}

interface ExportArgs {
  model: string;
  out: string;
  adapter?: string[];
  dtype?: string;
  force: boolean;
  json: boolean;
}

const handle = handler(async (a: ExportArgs) => {
  const { exportMergedCheckpoint } = await import('../models/export.js');
  const res = await exportMergedCheckpoint(a.model, a.out, {
    adapters: a.adapter ?? [],
    ...(a.dtype ? { dtype: a.dtype as ExportDtype } : {}),
    force: a.force,
  });
  if (a.json) {
    process.stdout.write(JSON.stringify(res, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    `exported ${res.tensors} tensors (${res.merged.length} merged from ${res.adapters.length} adapter(s), ${formatBytes(res.totalSize)}) ` +
      `in ${res.weightFiles.length} weight file(s), plus ${res.copied.length} other file(s), to ${res.outDir}\n`,
  );
});
export { handle as handler };
