/**
 * The `eval` stage. Suite mmeb: the stage's base model with the adapters of `init_from` (an
 * earlier training stage: its adapter chain, in merge order) scored on an MMEB-eval folder; results,
 * reports and the embedding cache go to the stage's output dir (the cache survives a rerun, so an
 * interrupted stage resumes). Other suites are not in this build.
 */
import * as path from 'node:path';
import { NotImplementedYetError } from '../errors.js';
import { resolveAdapterChain } from '../models/peft/chain.js';
import { attachStageRunner, type StageContext, type StageResult } from '../recipes/registry.js';
import '../recipes/kinds.js';
import type { EvalStage } from '../recipes/kinds.js';
import { META_TASKS } from './mmeb-datasets.js';
import { failedDatasetsError, runMmebEval, type EvalModel } from './mmeb-eval.js';
import { loadMllmEvalModel, mllmEvalIdentity } from './mllm-model.js';

export const EVAL_CACHE_DIR = 'embed-cache';

export interface EvalStageDeps {
  /** How to load the model (tests pass a fake); default: the MultimodalEmbedder. */
  loadModel?: (modelDir: string, adapters: readonly string[], imageSize: number | null) => Promise<EvalModel>;
}

/** The runner, with its model loader replaceable (tests attach one with a fake model). */
export function makeEvalStageRunner(deps: EvalStageDeps = {}) {
  const load = deps.loadModel ?? loadMllmEvalModel;
  return async function runEvalStage(ctx: StageContext<EvalStage>): Promise<StageResult> {
    const s = ctx.stage;
    if (s.suite !== 'mmeb') {
      throw new NotImplementedYetError(`eval suite "${s.suite}" is not in this build yet (only mmeb is)`, {
        file: ctx.recipeFile,
        field: `stages[${ctx.index}].suite`,
        fix: 'use suite: mmeb',
      });
    }
    const modelDir = await ctx.resolveModel(s.model);
    const adapters = await resolveAdapterChain(ctx.initFrom, `stages[${ctx.index}].init_from`);
    const settings = { maxLength: s.max_length, imageToken: s.image_token, imageSize: s.image_size };
    const modelName = s.model.path + (ctx.initFrom ? ` + ${path.basename(ctx.initFrom)}` : '');
    const outcome = await runMmebEval({
      dataRoot: s.data.root,
      datasets: s.datasets,
      outDir: ctx.outputDir,
      modelName,
      // The runtime (device, precision) is set up by whoever runs the recipe.
      loadModel: () => load(modelDir, adapters, s.image_size),
      cacheDir: path.join(ctx.outputDir, EVAL_CACHE_DIR),
      identity: await mllmEvalIdentity(modelDir, adapters, settings),
      batchSize: s.batch_size,
      maxLength: s.max_length,
      imageToken: s.image_token,
      log: ctx.log,
      metadata: { stage: s.name, model_dir: modelDir, adapters },
    });
    for (const line of outcome.table.trimEnd().split('\n')) ctx.log.info(line);
    if (outcome.failed.length > 0) throw failedDatasetsError(outcome);
    const sm = outcome.summary;
    return {
      suite: 'mmeb',
      benchmark: sm.benchmark,
      model: modelName,
      adapters,
      overall: sm.overall.mean,
      ind: sm.ind.mean,
      ood: sm.ood.mean,
      meta_tasks: Object.fromEntries(META_TASKS.map((t) => [t, sm.metaTasks[t].mean])),
      four_category_mean: sm.fourCategoryMean.mean,
      complete: sm.complete,
      missing: sm.missing.map((m) => m.name),
      datasets: outcome.datasets.length,
      embedded: outcome.embedded,
      cached: outcome.cached,
      embeddings_per_second: outcome.embeddings_per_second,
      seconds: outcome.seconds,
      results: outcome.files.result,
      summary: outcome.files.summary,
      report: outcome.files.markdown,
    };
  };
}

attachStageRunner<EvalStage>('eval', makeEvalStageRunner());
