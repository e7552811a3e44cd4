import type { Argv } from 'yargs';
import { handler } from './common.js';
import { notInThisBuild } from './later.js';

export const command = 'embed';
export const describe = 'Embed your own texts and images';
export function builder(y: Argv) {
  return y
    .option('model', { type: 'string', describe: 'checkpoint directory or Hub id', demandOption: true })
    .option('text', { type: 'string', array: true, describe: 'texts to embed (repeatable)' })
    .option('image', { type: 'string', array: true, describe: 'image files to embed (repeatable)' })
    .option('input', { type: 'string', describe: 'a jsonl file with {text?, image?} rows' })
    .option('out', { type: 'string', describe: 'output file (.npy or .jsonl)' })
    .option('batch-size', { type: 'number', default: 16 })
    .option('device', { type: 'string', choices: ['auto', 'cpu', 'native', 'cuda'], default: 'auto' });
}
const handle = handler(() => notInThisBuild('embed', 'the model zoo (decoders, vision towers, tokenizers, image processors)'));
export { handle as handler };
