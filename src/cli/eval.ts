import type { Argv } from 'yargs';
import { handler } from './common.js';
import { notInThisBuild } from './later.js';

export const SUITES = ['mmeb', 'retrieval', 'sugarcrepe', 'zeroshot'] as const;

export const command = 'eval <suite>';
export const describe = 'Evaluate a model on MMEB or another suite';
export function builder(y: Argv) {
  return y
    .positional('suite', { choices: SUITES, describe: 'benchmark suite', demandOption: true })
    .option('model', { type: 'string', describe: 'checkpoint directory or Hub id', demandOption: true })
    .option('data', { type: 'string', describe: 'local folder with the suite data (e.g. the MMEB-eval layout)' })
    .option('datasets', { type: 'string', array: true, describe: 'evaluate only these datasets' })
    .option('out', { type: 'string', describe: 'folder for results JSON, Markdown and HTML' })
    .option('batch-size', { type: 'number', default: 16 })
    .option('device', { type: 'string', choices: ['auto', 'cpu', 'native', 'cuda'], default: 'auto' });
}
const handle = handler(() => notInThisBuild('eval', 'the evaluation engine (MMEB scoring, retrieval, SugarCrepe, zero-shot)'));
export { handle as handler };
