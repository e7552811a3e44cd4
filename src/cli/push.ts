import type { Argv } from 'yargs';
import { handler } from './common.js';
import { notInThisBuild } from './later.js';

export const command = 'push <checkpoint> <repo>';
export const describe = 'Upload a checkpoint and model card to the Hub';
export function builder(y: Argv) {
  return y
    .positional('checkpoint', { type: 'string', describe: 'checkpoint directory (adapter or merged model)', demandOption: true })
    .positional('repo', { type: 'string', describe: 'Hub repository, e.g. you/unime-phi35v', demandOption: true })
    .option('private', { type: 'boolean', default: false, describe: 'create the repository as private' })
    .option('revision', { type: 'string', describe: 'branch to push to' });
}
const handle = handler(() => notInThisBuild('push', 'the Hugging Face Hub client'));
export { handle as handler };
