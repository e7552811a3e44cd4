/**
 * The `synthetic-data` stage: writes the bundled synthetic benchmark (MMEB-layout train and eval
 * sets, stage-1 text pairs) and the tiny models into `out`, so a fresh checkout can run the whole
 * pipeline with nothing downloaded. The generator is deterministic and writes atomically; a rerun
 * rewrites identical bytes.
 */
import * as path from 'node:path';
import { generateSynthetic } from '../../tools/synth/generate.js';
import type { SyntheticDataStage } from '../recipes/kinds.js';
import { attachStageRunner, type StageContext, type StageResult } from '../recipes/registry.js';

export async function runSyntheticData(ctx: StageContext<SyntheticDataStage>): Promise<StageResult> {
  const s = ctx.stage;
  const out = path.resolve(s.out);
  const seed = s.seed ?? ctx.recipe.seed;
  const t0 = performance.now();
  ctx.log.info(`synthetic-data: writing the ${s.size} benchmark (seed ${seed})${s.models ? ' and tiny models' : ''} to ${out}`);
  const summary = await generateSynthetic({ out, seed, size: s.size, models: s.models });
  const seconds = (performance.now() - t0) / 1000;
  ctx.log.info(`synthetic-data: ${summary.files} files (${(summary.bytes / 1024 / 1024).toFixed(1)} MiB) in ${seconds.toFixed(1)} s`);
  return {
    out,
    seed,
    size: s.size,
    files: summary.files,
    bytes: summary.bytes,
    train_subsets: summary.trainSubsets,
    eval_datasets: summary.evalDatasets,
    text_pairs: summary.textPairs,
    models: summary.models,
    seconds,
  };
}

attachStageRunner<SyntheticDataStage>('synthetic-data', runSyntheticData);
