/**
 * The `eval` stage. Suite mmeb: the stage's base model with the adapters of `init_from` (an
 * earlier training stage: its adapter chain, in merge order) scored on an MMEB-eval folder; results,
 * reports and the embedding cache go to the stage's output dir (the cache survives a rerun, so an
 * interrupted stage resumes). Suites retrieval, sugarcrepe and zeroshot: the same model on that
 * suite's public format (./suite-eval.ts), results and cache in the same places.
 */
import * as path from 'node:path';
import { resolveAdapterChain } from '../models/peft/chain.js';
import { attachStageRunner, type StageContext, type StageResult } from '../recipes/registry.js';
import '../recipes/kinds.js';
import type { EvalStage } from '../recipes/kinds.js';
import { META_TASKS } from './mmeb-datasets.js';
import { failedDatasetsError, runMmebEval, type EvalModel } from './mmeb-eval.js';
import { defaultPrompts, loadMllmEvalModel, mllmEvalIdentity } from './mllm-model.js';
import { readSuiteData, runSuiteEval } from './suite-eval.js';

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
    const modelDir = await ctx.resolveModel(s.model);
    const adapters = await resolveAdapterChain(ctx.initFrom, `stages[${ctx.index}].init_from`);
    const settings = { maxLength: s.max_length, imageToken: s.image_token, imageSize: s.image_size };
    const modelName = s.model.path + (ctx.initFrom ? ` + ${path.basename(ctx.initFrom)}` : '');
    if (s.suite !== 'mmeb') {
      const field = `stages[${ctx.index}].data`;
      const data = await readSuiteData(s.suite, s.data.root, {
        field: `${field}.root`,
        ...(s.data.images ? { images: s.data.images } : {}),
        ...(s.data.classnames ? { classNames: s.data.classnames } : {}),
        ...(s.data.templates ? { templates: s.data.templates } : {}),
        ...(s.suite === 'sugarcrepe' && s.datasets !== 'all' ? { subsets: s.datasets } : {}),
      });
      const o = await runSuiteEval({
        data,
        dataPath: s.data.root,
        outDir: ctx.outputDir,
        modelName,
        loadModel: () => load(modelDir, adapters, s.image_size),
        cacheDir: path.join(ctx.outputDir, EVAL_CACHE_DIR),
        identity: await mllmEvalIdentity(modelDir, adapters, { ...settings, imageToken: 'auto' }),
        batchSize: s.batch_size,
        maxLength: s.max_length,
        imagePrompt: s.image_prompt ?? defaultPrompts(modelDir).image,
        textPrompt: s.text_prompt ?? defaultPrompts(modelDir).text,
        log: ctx.log,
        metadata: { stage: s.name, model_dir: modelDir, adapters },
      });
      for (const line of o.table.trimEnd().split('\n')) ctx.log.info(line);
      return {
        suite: s.suite,
        model: modelName,
        adapters,
        score: o.score,
        scores: o.result.scores,
        embedded: o.embedded,
        cached: o.cached,
        embeddings_per_second: o.embeddings_per_second,
        seconds: o.seconds,
        results: o.files.result,
        report: o.files.markdown,
      };
    }
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
