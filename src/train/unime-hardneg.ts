/**
 * The `unime-hardneg` stage: UniME stage 2, hard-negative enhanced instruction tuning on MMEB-train.
 * The model is an MLLM checkpoint with the earlier stages' adapters merged (init_from), frozen, with
 * a fresh LoRA on its language model. Every step embeds the batch's queries and positive targets
 * (images + instructions), filters false negatives (cos > cos(q, c+) + beta), picks the k hardest
 * remaining candidates of the whole batch and applies InfoNCE over [positive, k negatives] at tau;
 * `loss.mode: inbatch` is VLM2Vec's plain in-batch InfoNCE instead. GradCache chunks the forward and
 * backward passes while the loss sees the whole batch.
 *
 * Output (the stage's output dir): checkpoints/ (each with the adapter), metrics.jsonl (loss, lr,
 * false-negative rate, positive and hard-negative similarities per step), plots.html, adapter/ and
 * adapter-chain.json (the adapters merged underneath, for loaders).
 */
import * as path from 'node:path';
import type { z } from 'zod';
import { UnimeError } from '../errors.js';
import { listMmebTrainSubsets, readMmebTrainSubset, type ImageResolver } from '../data/mmeb.js';
import { decodeImage, type RgbImage } from '../images/decode.js';
import { hardNegativeInfoNce, type HardNegativeStats } from '../losses/hard-negative-infonce.js';
import { inbatchInfoNce } from '../losses/inbatch-infonce.js';
import { checkImageSize } from '../models/mllm/embedder.js';
import { loadMultimodalModel } from '../models/mllm/load.js';
import type { MultimodalModel, PreparedInput } from '../models/mllm/types.js';
import { ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, applyLora, resolveAdapterChain, saveLoraAdapter, writeAdapterChain } from '../models/peft/index.js';
import { mergeMultimodalAdapterChain, multimodalLoraTarget } from '../models/mllm/lora-target.js';
import { attachStageRunner, type StageContext, type StageResult } from '../recipes/registry.js';
import type { unimeHardnegSchema } from '../recipes/kinds.js';
import { Rng } from '../runtime/rng.js';
import { tf, type Tensor } from '../runtime/tf.js';
import { ShuffledBatches, SubsetBatches, subsetWeights, type TrainData } from './data.js';
import { DropoutReplay, lossSummary } from './dropout-replay.js';
import { gradCacheStep } from './gradcache.js';
import { loopOptionsFromRecipe, loraOptionsFromRecipe, train } from './trainer.js';

export type UnimeHardnegStage = z.output<typeof unimeHardnegSchema>;

export interface UnimeHardnegResult extends StageResult {
  steps: number;
  first_loss: number | null;
  final_loss: number | null;
  adapter: string;
  adapter_chain: string[];
  pairs: number;
  subsets: Record<string, number>;
  lora_layers: number;
  lora_parameters: number;
  seconds: number;
}

/** One side of a training pair: text (with an image marker when there is an image) and a relative image path ('' = none). */
interface Side {
  text: string;
  image: string;
}

interface Pair {
  subset: number;
  query: Side;
  pos: Side;
  neg: Side | null;
}

/** Decoded images by subset and path, the most recently used kept (training revisits images every epoch). */
class ImageCache {
  private readonly map = new Map<string, RgbImage>();
  constructor(private readonly capacity: number) {}

  async get(key: string, load: () => Promise<RgbImage>): Promise<RgbImage> {
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit;
    }
    const img = await load();
    this.map.set(key, img);
    if (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value!);
    return img;
  }
}

/** Cosines above this between a query and both its positive and its hard negatives mean the embeddings have collapsed. */
const COLLAPSED_COSINE = 0.995;
/** Consecutive collapsed steps before the stage warns. */
const COLLAPSE_PATIENCE = 5;

/** Tells, once, when COLLAPSE_PATIENCE consecutive steps had both mean cosines above COLLAPSED_COSINE. */
export class CollapseWatch {
  private run = 0;
  private warned = false;

  /** Feed one step's stats (pos_sim, hard_neg_sim); true exactly once, when the collapse is first confirmed. */
  update(stats: Readonly<Record<string, number>>): boolean {
    const pos = stats.pos_sim;
    const neg = stats.hard_neg_sim;
    this.run = pos !== undefined && neg !== undefined && pos > COLLAPSED_COSINE && neg > COLLAPSED_COSINE ? this.run + 1 : 0;
    if (this.run < COLLAPSE_PATIENCE || this.warned) return false;
    this.warned = true;
    return true;
  }
}

/**
 * One integer per target, equal for targets with the same content: the same text and the same image
 * file of the same subset (image paths are relative to their subset's root).
 */
export function contentIds(targets: readonly { subset: number; side: Side }[]): Int32Array {
  const seen = new Map<string, number>();
  return Int32Array.from(targets, ({ subset, side }) => {
    const key = JSON.stringify([side.text, side.image ? subset : -1, side.image]);
    let id = seen.get(key);
    if (id === undefined) seen.set(key, (id = seen.size));
    return id;
  });
}

/** Mean over the batch's rows (row i's positive is target i) of the other targets that copy it. */
function positiveCopiesPerRow(ids: Int32Array, rows: number): number {
  let n = 0;
  for (let i = 0; i < rows; i++) for (let j = 0; j < ids.length; j++) if (j !== i && ids[j] === ids[i]) n++;
  return rows > 0 ? n / rows : 0;
}

/** Statistics of the step's similarity matrix for metrics.jsonl. */
function stepStats(stats: HardNegativeStats): Record<string, number> {
  const out: Record<string, number> = {
    false_negative_rate: stats.falseNegativeRate,
    pos_sim: stats.meanPositiveSimilarity,
    rows_short_of_negatives: stats.rowsShortOfNegatives,
  };
  if (Number.isFinite(stats.meanHardNegativeSimilarity)) out.hard_neg_sim = stats.meanHardNegativeSimilarity;
  return out;
}

export async function runUnimeHardneg(ctx: StageContext<UnimeHardnegStage>): Promise<UnimeHardnegResult> {
  const t0 = performance.now();
  const s = ctx.stage;
  const t = s.train;
  if (s.quantization !== 'none') {
    ctx.log.warn(`unime-hardneg: quantization ${s.quantization} is not supported by this build; the frozen base weights stay in fp32`);
  }

  // Data: every selected subset, capped, as (query, positive, negative) pairs.
  const root = path.resolve(s.data.root);
  const names = s.data.subsets === 'all' ? await listMmebTrainSubsets(root) : s.data.subsets;
  if (names.length === 0) {
    throw new UnimeError('no MMEB-train subsets found (a subset is a folder holding a parquet file)', { file: root, field: 'data.root', fix: 'point data.root at the MMEB-train root' });
  }
  const weightOf = subsetWeights(s.data, names);
  const resolvers: ImageResolver[] = [];
  const groups: Pair[][] = [];
  const subsetCounts: Record<string, number> = {};
  for (const [i, name] of names.entries()) {
    const sub = await readMmebTrainSubset(root, name, { split: s.data.split, cap: s.data.cap_per_subset });
    resolvers.push(sub.images);
    subsetCounts[name] = sub.rows.length;
    groups.push(
      sub.rows.map((r) => ({
        subset: i,
        query: { text: r.qry, image: r.qry_image_path },
        pos: { text: r.pos_text, image: r.pos_image_path },
        neg: r.neg_text !== '' || r.neg_image_path !== '' ? { text: r.neg_text, image: r.neg_image_path } : null,
      })),
    );
  }
  const pairs = groups.flat();
  const useNegatives = s.loss.dataset_negatives;
  if (useNegatives && !pairs.some((p) => p.neg !== null)) {
    ctx.log.warn('unime-hardneg: loss.dataset_negatives is on but no selected subset has neg_text / neg_image_path columns');
  }

  const modelDir = await ctx.resolveModel(s.model);
  const chain = await resolveAdapterChain(ctx.initFrom);
  const rng = new Rng(ctx.recipe.seed).fork(`unime-hardneg:${ctx.index}`);
  ctx.log.info(`unime-hardneg: loading ${s.model.path}${chain.length ? ` with ${chain.length} adapter(s) merged (${chain.map((c) => path.relative(process.cwd(), c) || c).join(', ')})` : ''}`);
  const model: MultimodalModel = await loadMultimodalModel(modelDir, { trainable: false });
  const ownVariables: tf.Variable[] = [];
  try {
    checkImageSize(model, s.image_size);
    if (model.imageMarker === null && pairs.some((p) => p.query.image || p.pos.image)) {
      throw new UnimeError(`${s.model.path} is a text-only model but the data has images`, { field: 'model', fix: 'train stage 2 on a multimodal checkpoint (LLaVA, ...)' });
    }
    await mergeMultimodalAdapterChain(model, chain);
    // the language model, or with lora.vision_tower the language model and the vision tower (one peft adapter)
    const loraTarget = multimodalLoraTarget(model, s.lora.vision_tower);
    const adapter = applyLora(loraTarget, loraOptionsFromRecipe(s.lora, rng));
    ownVariables.push(...adapter.variables);
    await writeAdapterChain(ctx.outputDir, chain);
    adapter.train(true);

    const images = new ImageCache(4096);
    const marker = s.image_token === 'auto' ? null : s.image_token;
    const prepareSide = async (p: Pair, side: Side): Promise<PreparedInput> => {
      let img: RgbImage | null = null;
      if (side.image !== '') {
        const resolver = resolvers[p.subset]!;
        img = await images.get(`${p.subset}\0${side.image}`, async () => decodeImage(await resolver.locate(side.image)));
      }
      const text = marker !== null && model.imageMarker !== null ? side.text.split(marker).join(model.imageMarker) : side.text;
      return model.prepare(text, img, { maxLength: s.max_length });
    };

    // Dropout masks must match in GradCache's two passes over a chunk: replay the stream per chunk and side.
    const replay = new DropoutReplay(adapter.dropoutRng);
    const encoder =
      (side: string) =>
      (chunk: PreparedInput[], chunkIndex: number): Tensor => {
        replay.enter(`${side}:${chunkIndex}`);
        return model.embed(chunk);
      };

    const data: TrainData<Pair[]> =
      s.data.sub_batch_size === null
        ? new ShuffledBatches(pairs, t.batch_size, rng.fork('data'))
        : new SubsetBatches(groups, t.batch_size, s.data.sub_batch_size, rng.fork('data'), weightOf);
    if (data instanceof SubsetBatches && Object.keys(s.data.subset_weights).length > 0) {
      ctx.log.info(`unime-hardneg: share of the sub-batches per subset (data.subset_weights): ${data.shares.map((x, i) => `${names[i]} ${(100 * x).toFixed(1)} %`).join(', ')}`);
    }
    const params = adapter.variables;
    ctx.log.info(
      `unime-hardneg: ${pairs.length} pairs from ${names.length} subset(s), ${adapter.layers.length} LoRA layers (${adapter.numParameters} parameters), batch ${t.batch_size}, ` +
        (s.loss.mode === 'hardneg'
          ? `k ${s.loss.hard_negatives}, beta ${s.loss.false_negative_beta}, tau ${s.loss.temperature}` +
            (s.loss.inbatch_warmup_steps > 0 ? `, in-batch InfoNCE for the first ${s.loss.inbatch_warmup_steps} steps` : '')
          : `in-batch InfoNCE, tau ${s.loss.temperature}`),
    );

    // A collapsed model (every embedding the same direction) has loss ln(k + 1) and no gradient left:
    // say so once, with what usually helps, instead of letting the run finish silently at chance.
    const collapse = new CollapseWatch();
    const watchCollapse = (stats: Record<string, number>) => {
      if (collapse.update(stats)) {
        ctx.log.warn(
          `unime-hardneg: the embeddings have collapsed (positive and hard-negative cosines above ${COLLAPSED_COSINE} for ${COLLAPSE_PATIENCE} steps; the loss sits at ln(k + 1)); ` +
            'a lower train.lr, a higher loss.temperature, more hard negatives, loss.inbatch_warmup_steps or a stronger start usually help',
        );
      }
    };

    const result = await train<Pair[]>({
      ...loopOptionsFromRecipe(t),
      params,
      data,
      outputDir: ctx.outputDir,
      rng,
      rngs: { 'lora-dropout': adapter.dropoutRng },
      // --force starts over; otherwise a rerun continues from the newest checkpoint.
      resume: !ctx.fresh,
      overwrite: ctx.fresh,
      label: 'unime-hardneg',
      step: async (batch, stepCtx) => {
        replay.clear();
        const queries: PreparedInput[] = [];
        const targets: PreparedInput[] = [];
        const targetSides: { subset: number; side: Side }[] = [];
        const addTarget = async (p: Pair, side: Side) => {
          targets.push(await prepareSide(p, side));
          targetSides.push({ subset: p.subset, side });
        };
        for (const p of batch) {
          queries.push(await prepareSide(p, p.query));
          await addTarget(p, p.pos);
        }
        if (useNegatives) for (const p of batch) if (p.neg) await addTarget(p, p.neg);
        const b = batch.length;
        const candidateIds = s.loss.exclude_positive_copies ? contentIds(targetSides) : null;
        let stats: Record<string, number> = {};
        const copies: Record<string, number> = candidateIds ? { positive_copies: positiveCopiesPerRow(candidateIds, b) } : {};
        const out = gradCacheStep<PreparedInput, PreparedInput>({
          params,
          encoders: { query: encoder('query'), target: encoder('target') },
          batch: { query: queries, target: targets },
          chunkSize: t.gradcache_chunk_size ?? Math.max(queries.length, targets.length),
          loss: (q, c) => {
            if (s.loss.mode === 'hardneg' && stepCtx.step > s.loss.inbatch_warmup_steps) {
              const r = hardNegativeInfoNce(q, c, {
                temperature: s.loss.temperature,
                beta: s.loss.false_negative_beta,
                k: s.loss.hard_negatives,
                shortRows: s.loss.when_fewer_than_k === 'mask' ? 'mask' : 'duplicate',
                candidateIds,
              });
              stats = { ...stepStats(r.stats), ...copies };
              watchCollapse(stats);
              return r.loss;
            }
            stats = copies;
            const extra = c.shape[0]! > b ? tf.slice(c, [b, 0], [-1, -1]) : null;
            const pos = extra ? tf.slice(c, [0, 0], [b, -1]) : c;
            return inbatchInfoNce(q, pos, { temperature: s.loss.temperature, extraNegatives: extra, candidateIds });
          },
        });
        const tokens = queries.reduce((n, x) => n + x.ids.length, 0) + targets.reduce((n, x) => n + x.ids.length, 0);
        return { loss: out.loss, grads: out.grads, samples: b, tokens, stats };
      },
      onCheckpoint: async (info) => {
        await saveLoraAdapter(path.join(info.dir, ADAPTER_DIR), loraTarget);
      },
    });
    const adapterDir = path.join(ctx.outputDir, ADAPTER_DIR);
    await saveLoraAdapter(adapterDir, loraTarget);
    const seconds = (performance.now() - t0) / 1000;
    ctx.log.info(`unime-hardneg: ${result.step} steps in ${seconds.toFixed(1)}s; adapter in ${adapterDir}`);
    return {
      ...lossSummary(result),
      adapter: adapterDir,
      adapter_files: [ADAPTER_CONFIG, ADAPTER_WEIGHTS],
      adapter_chain: chain,
      pairs: pairs.length,
      subsets: subsetCounts,
      lora_layers: adapter.layers.length,
      lora_parameters: adapter.numParameters,
      seconds,
    };
  } finally {
    model.dispose();
    for (const v of ownVariables) if (!v.isDisposed) v.dispose();
    await Promise.all(resolvers.map((r) => r.close()));
  }
}

attachStageRunner<UnimeHardnegStage>('unime-hardneg', runUnimeHardneg);
