import type { Argv } from 'yargs';
import { formatTable, handler } from './common.js';
import { pull } from '../hub/download.js';
import { formatBytes } from '../hub/progress.js';
import { redactError } from '../hub/token.js';
import { log } from '../runtime/log.js';

export const command = 'pull <repo>';
export const describe = 'Download a model or dataset from the Hub into the Hugging Face cache';
export function builder(y: Argv) {
  return y
    .positional('repo', { type: 'string', describe: 'Hub repository, e.g. TIGER-Lab/VLM2Vec-Full', demandOption: true })
    .option('revision', { type: 'string', default: 'main', describe: 'branch, tag or commit sha' })
    .option('include', { type: 'string', array: true, describe: 'only files matching these globs (default: weights, configs, tokenizer and processor files; everything for datasets)' })
    .option('exclude', { type: 'string', array: true, describe: 'leave out files matching these globs' })
    .option('dataset', { type: 'boolean', default: false, describe: 'the repo is a dataset' })
    .option('offline', { type: 'boolean', describe: 'use only the cache (same as HF_HUB_OFFLINE=1); lists what is missing' })
    .option('cache-dir', { type: 'string', describe: 'hub cache directory (default $HF_HUB_CACHE, i.e. $HF_HOME/hub)' })
    .option('json', { type: 'boolean', default: false, describe: 'print the result as JSON' })
    .example('$0 pull TIGER-Lab/VLM2Vec-Full', 'weights, config and tokenizer into ~/.cache/huggingface/hub')
    .example('$0 pull TIGER-Lab/MMEB-eval --dataset --include "ImageNet-1K/*"', 'part of a dataset');
}

interface PullArgs {
  repo: string;
  revision: string;
  include?: string[];
  exclude?: string[];
  dataset: boolean;
  offline?: boolean;
  'cache-dir'?: string;
  json: boolean;
}

const handle = handler(async (a: PullArgs) => {
  try {
    const res = await pull(a.repo, {
      repoType: a.dataset ? 'dataset' : 'model',
      revision: a.revision,
      include: a.include,
      exclude: a.exclude,
      ...(a.offline !== undefined ? { offline: a.offline } : {}),
      ...(a['cache-dir'] ? { cacheDir: a['cache-dir'] } : {}),
    });
    if (a.json) {
      process.stdout.write(JSON.stringify(res, null, 2) + '\n');
      return;
    }
    const fetched = res.files.filter((f) => f.status === 'downloaded').length;
    log.info(
      `${res.repo.id}@${res.revision} (commit ${res.commit.slice(0, 12)}): ${res.files.length} files, ${fetched} downloaded (${formatBytes(res.downloadedBytes)}), ${res.files.length - fetched} from the cache${res.fromCacheOnly ? ' (offline)' : ''}`,
    );
    const rows = res.files.map((f) => [f.path, formatBytes(f.size), f.status]);
    process.stdout.write(formatTable(['file', 'size', 'status'], rows, [1]) + '\n' + res.snapshotDir + '\n');
  } catch (e) {
    throw redactError(e);
  }
});
export { handle as handler };
