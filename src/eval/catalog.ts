/**
 * Which datasets an MMEB-eval data root holds and how they aggregate. Real MMEB-eval folders are
 * named after the 36 datasets, whose meta-task and IND/OOD split are known
 * (./mmeb-datasets.ts). Other MMEB-shaped collections (the synthetic benchmark of tools/synth) say
 * it in a manifest.json, in the data root or the folder above it (`data/synthetic/manifest.json`
 * for `data/synthetic/mmeb-eval`):
 *
 *     { "eval": [ { "dataset": "SynCls", "meta_task": "Classification", "distribution": "IND" }, ... ] }
 */
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { listMmebEvalDatasets, MMEB_EVAL_FILE } from '../data/mmeb.js';
import type { DatasetCatalog } from './aggregate.js';
import { META_TASKS, type MetaTask, type MmebDatasetInfo, findMmebDataset } from './mmeb-datasets.js';

export const MANIFEST_FILE = 'manifest.json';

/** What {@link openMmebEvalRoot} found. */
export interface MmebEvalRoot {
  /** The folder holding the dataset folders. */
  root: string;
  /** Dataset folder names, sorted. */
  datasets: string[];
  /** The expected datasets when they are not MMEB's 36 (from a manifest), else undefined. */
  catalog: DatasetCatalog | undefined;
  /** The manifest read, if any. */
  manifest: string | undefined;
}

/**
 * Find the dataset folders under `dataRoot` (or under its `mmeb-eval/` when the root itself holds
 * none, so the synthetic benchmark's top folder works too) and the catalog its manifest gives.
 */
export async function openMmebEvalRoot(dataRoot: string, field = '--data'): Promise<MmebEvalRoot> {
  const given = path.resolve(dataRoot);
  let st;
  try {
    st = await fsp.stat(given);
  } catch {
    throw new UnimeError('no such folder', { file: dataRoot, field, fix: 'point it at an MMEB-eval folder (one sub-folder per dataset, each with ' + MMEB_EVAL_FILE + ')' });
  }
  if (!st.isDirectory()) {
    throw new UnimeError('is a file, not a folder', { file: dataRoot, field, fix: 'point it at the MMEB-eval folder that holds one sub-folder per dataset' });
  }
  let root = given;
  let datasets = await listMmebEvalDatasets(root);
  if (datasets.length === 0 && existsSync(path.join(given, 'mmeb-eval'))) {
    root = path.join(given, 'mmeb-eval');
    datasets = await listMmebEvalDatasets(root);
  }
  if (datasets.length === 0) {
    throw new UnimeError(`holds no MMEB-eval dataset (no <dataset>/${MMEB_EVAL_FILE})`, {
      file: dataRoot,
      field,
      fix: 'download TIGER-Lab/MMEB-eval there, or generate the synthetic benchmark: node dist/tools/synth/generate.js --out data/synthetic',
    });
  }
  let manifest: string | undefined;
  for (const dir of [root, path.dirname(root)]) {
    const f = path.join(dir, MANIFEST_FILE);
    if (existsSync(f)) {
      manifest = f;
      break;
    }
  }
  const catalog = manifest ? await readManifestCatalog(manifest) : undefined;
  return { root, datasets, catalog: catalog ?? undefined, manifest };
}

/**
 * The catalog of a manifest's `eval` list, or null when the manifest has no such list (then the
 * datasets are taken as MMEB's). A malformed entry is an error naming the file and entry.
 */
export async function readManifestCatalog(file: string): Promise<DatasetCatalog | null> {
  let value: unknown;
  try {
    value = JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (e) {
    throw new UnimeError(`is not readable JSON: ${(e as Error).message}`, { file, fix: 'repair or regenerate the manifest' });
  }
  const list = (value as { eval?: unknown } | null)?.eval;
  if (!Array.isArray(list)) return null;
  const datasets: MmebDatasetInfo[] = [];
  list.forEach((entry: unknown, i) => {
    const e = entry as { dataset?: unknown; meta_task?: unknown; distribution?: unknown } | null;
    const field = `eval[${i}]`;
    if (!e || typeof e.dataset !== 'string' || e.dataset === '') {
      throw new UnimeError('needs a "dataset" name', { file, field, fix: 'each eval entry is { "dataset", "meta_task", "distribution" }' });
    }
    const known = findMmebDataset(e.dataset);
    const metaTask = e.meta_task ?? known?.metaTask;
    const distribution = e.distribution ?? known?.distribution;
    if (!(META_TASKS as readonly unknown[]).includes(metaTask)) {
      throw new UnimeError(`meta_task ${JSON.stringify(metaTask)} is not one of ${META_TASKS.join(', ')}`, { file, field: `${field}.meta_task`, fix: 'name the MMEB meta-task this dataset counts towards' });
    }
    if (distribution !== 'IND' && distribution !== 'OOD') {
      throw new UnimeError(`distribution ${JSON.stringify(distribution)} is not IND or OOD`, { file, field: `${field}.distribution`, fix: 'IND: its training split is in the training data; OOD: evaluation only' });
    }
    if (datasets.some((d) => d.name === e.dataset)) throw new UnimeError(`dataset "${e.dataset}" is listed twice`, { file, field, fix: 'list each dataset once' });
    datasets.push({ name: e.dataset, metaTask: metaTask as MetaTask, distribution });
  });
  if (datasets.length === 0) return null;
  const name = typeof (value as { generator?: unknown }).generator === 'string' && /synth/.test((value as { generator: string }).generator) ? 'Synthetic MMEB' : path.basename(path.dirname(file));
  return { name, datasets };
}
