import type { Argv } from 'yargs';
import { formatTable, handler } from './common.js';
import { formatBytes } from '../hub/progress.js';
import { redactError } from '../hub/token.js';
import { push } from '../hub/upload.js';
import { log } from '../runtime/log.js';

export const command = 'push <checkpoint> <repo>';
export const describe = 'Upload a checkpoint and model card to the Hub';
export function builder(y: Argv) {
  return y
    .positional('checkpoint', { type: 'string', describe: 'checkpoint directory (adapter or merged model)', demandOption: true })
    .positional('repo', { type: 'string', describe: 'Hub repository, e.g. you/unime-phi35v', demandOption: true })
    .option('private', { type: 'boolean', default: false, describe: 'create the repository as private' })
    .option('revision', { type: 'string', describe: 'branch to push to (created if missing)' })
    .option('message', { type: 'string', describe: 'commit message' })
    .option('license', { type: 'string', describe: 'license for the model card, e.g. apache-2.0' })
    .option('include-optimizer', { type: 'boolean', default: false, describe: 'also upload optimizer and scheduler state' })
    .option('include', { type: 'string', array: true, describe: 'also upload files matching these globs' })
    .option('exclude', { type: 'string', array: true, describe: 'leave out files matching these globs' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'list what would be uploaded and print the model card; send nothing' })
    .option('json', { type: 'boolean', default: false, describe: 'print the result as JSON' });
}

interface PushArgs {
  checkpoint: string;
  repo: string;
  private: boolean;
  revision?: string;
  message?: string;
  license?: string;
  'include-optimizer': boolean;
  include?: string[];
  exclude?: string[];
  'dry-run': boolean;
  json: boolean;
}

const handle = handler(async (a: PushArgs) => {
  try {
    const res = await push(a.checkpoint, a.repo, {
      private: a.private,
      ...(a.revision ? { revision: a.revision } : {}),
      ...(a.message ? { message: a.message } : {}),
      includeOptimizer: a['include-optimizer'],
      include: a.include,
      exclude: a.exclude,
      dryRun: a['dry-run'],
      ...(a.license ? { card: { license: a.license } } : {}),
    });
    if (a.json) {
      const { plan, ...rest } = res;
      const out = { ...rest, kind: plan.kind, skipped: plan.skipped, ...(a['dry-run'] ? { card: plan.card } : {}) };
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      return;
    }
    if (a['dry-run']) {
      const rows = res.plan.files.map((f) => [f.path, formatBytes(f.size)]);
      process.stdout.write(`would push ${res.plan.kind === 'adapter' ? 'an adapter' : 'a merged model'} to ${res.url}:\n`);
      process.stdout.write(formatTable(['file', 'size'], rows, [1]) + '\n');
      if (res.plan.skipped.length > 0) {
        process.stdout.write('\nleft out:\n' + formatTable(['file', 'why'], res.plan.skipped.map((s) => [s.path, s.reason])) + '\n');
      }
      process.stdout.write('\n' + res.plan.card);
      return;
    }
    const rows = res.files.map((f) => [f.path, formatBytes(f.size), f.lfs ? 'lfs' : 'regular']);
    process.stdout.write(formatTable(['file', 'size', 'storage'], rows, [1]) + '\n');
    log.info(`${formatBytes(res.uploadedBytes)} of large files sent`);
    process.stdout.write(`pushed to ${res.url}${res.revision !== 'main' ? ` (branch ${res.revision})` : ''}, commit ${res.commitOid}\n`);
  } catch (e) {
    throw redactError(e);
  }
});
export { handle as handler };
