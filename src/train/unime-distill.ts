/**
 * The `unime-distill` stage: UniME stage 1, textual discriminative knowledge distillation. The
 * student is the language model of an (M)LLM checkpoint, frozen, with a LoRA adapter; every step
 * embeds a batch of texts (prompt template, left padding, last-token pooling, L2) and matches the
 * in-batch similarity distribution of the student to the teacher's cached one (KL divergence).
 * GradCache splits the forward/backward passes into chunks while the loss sees the whole batch.
 *
 * Output (the stage's output dir): checkpoints/ (each with the LoRA adapter in PEFT layout),
 * metrics.jsonl, plots.html, and adapter/ (the final adapter: adapter_config.json +
 * adapter_model.safetensors).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { readTextPairs } from '../data/mmeb.js';
import { ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, applyLora, saveLoraAdapter, type LoraAdapter } from '../models/peft/index.js';
import { poolEmbeddings } from '../models/pooling.js';
import { loadTextDecoder, type LoadedTextDecoder } from '../models/text/load.js';
import { resolveTemplate } from '../models/text-embedder.js';
import { attachStageRunner, type StageContext, type StageResult } from '../recipes/registry.js';
import { Rng } from '../runtime/rng.js';
import { tf, type Tensor } from '../runtime/tf.js';
import { encodeBatch } from '../tokenizers/batch.js';
import { loadTokenizer } from '../tokenizers/load.js';
import { BACKBONE_NAMES, SENTENCE_SLOT, type BackboneName } from '../tokenizers/templates.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { inbatchKlDistillation } from '../losses/inbatch-kl-distillation.js';
import { ShuffledBatches } from './data.js';
import { DropoutReplay, lossSummary } from './dropout-replay.js';
import { gradCacheStep } from './gradcache.js';
import { distinctTexts, readTeacherCache } from './teacher-embed.js';
import { loopOptionsFromRecipe, loraOptionsFromRecipe, train } from './trainer.js';
import '../recipes/kinds.js';
import type { z } from 'zod';
import type { unimeDistillSchema } from '../recipes/kinds.js';

export type UnimeDistillStage = z.output<typeof unimeDistillSchema>;

export { ADAPTER_DIR };

export interface UnimeDistillResult extends StageResult {
  steps: number;
  first_loss: number | null;
  final_loss: number | null;
  adapter: string;
  texts: number;
  lora_layers: number;
  lora_parameters: number;
  seconds: number;
}

/** Hugging Face model_type of each backbone whose UniME template `auto` picks. */
const AUTO_TEMPLATES: Record<string, BackboneName> = {
  phi3_v: 'phi3.5-v',
  llava_next: 'llava-1.6-mistral',
  llava_onevision: 'llava-onevision',
  qwen2_vl: 'qwen2-vl',
};

/** The prompt (holding SENTENCE_SLOT) for the stage's prompt_template, or null for the bare text. */
export async function distillPrompt(template: string, modelDir: string, log?: { warn(msg: string): void }): Promise<string | null> {
  if (template !== 'auto') return resolveTemplate(template);
  let modelType: unknown;
  try {
    modelType = (JSON.parse(await fsp.readFile(path.join(modelDir, 'config.json'), 'utf8')) as { model_type?: unknown }).model_type;
  } catch {
    modelType = undefined;
  }
  const name = typeof modelType === 'string' ? AUTO_TEMPLATES[modelType] : undefined;
  if (name !== undefined && BACKBONE_NAMES.includes(name)) return resolveTemplate(name);
  log?.warn(`unime-distill: no UniME prompt template for model_type ${JSON.stringify(modelType)}; texts are embedded bare (set prompt_template to choose one)`);
  return null;
}

export interface DistillStudent {
  tokenizer: Tokenizer;
  decoder: LoadedTextDecoder;
  adapter: LoraAdapter;
}

/** Load the student's tokenizer and language model, freeze it and attach the stage's LoRA adapter. */
export async function loadDistillStudent(modelDir: string, stage: UnimeDistillStage, rng: Rng): Promise<DistillStudent> {
  const tokenizer = await loadTokenizer(modelDir);
  const decoder = await loadTextDecoder(modelDir, { trainable: false });
  try {
    const adapter = applyLora(decoder, loraOptionsFromRecipe(stage.lora, rng));
    return { tokenizer, decoder, adapter };
  } catch (e) {
    decoder.dispose();
    throw e;
  }
}

export async function runUnimeDistill(ctx: StageContext<UnimeDistillStage>): Promise<UnimeDistillResult> {
  const t0 = performance.now();
  const s = ctx.stage;
  const t = s.train;
  if (s.quantization !== 'none') {
    ctx.log.warn(`unime-distill: quantization ${s.quantization} is not supported by this build; the frozen base weights stay in fp32`);
  }

  // Teacher vectors and the texts they cover.
  const cacheDir = path.resolve(s.teacher_cache);
  const cache = await readTeacherCache(cacheDir);
  const pairs = await readTextPairs(s.data.path, { format: s.data.format });
  const texts = distinctTexts(pairs, s.data.text_columns, s.data.max_samples);
  if (texts.length === 0) {
    throw new UnimeError('the stage data holds no texts to distill', { file: s.data.path, field: 'data.text_columns', fix: 'check the file and the text columns' });
  }
  const missing = texts.filter((x) => !cache.has(x));
  if (missing.length > 0) {
    throw new UnimeError(`${missing.length} of the ${texts.length} texts have no teacher vector in the cache ${cacheDir} (e.g. ${JSON.stringify(missing[0]!.slice(0, 80))})`, {
      file: cacheDir,
      field: 'teacher_cache',
      fix: 'rerun the teacher-embed stage on the same data (--force), or point teacher_cache at its output',
    });
  }

  const modelDir = await ctx.resolveModel(s.model);
  const rng = new Rng(ctx.recipe.seed).fork(`unime-distill:${ctx.index}`);
  const prompt = await distillPrompt(s.prompt_template, modelDir, ctx.log);
  ctx.log.info(`unime-distill: loading ${s.model.path}`);
  const { tokenizer, decoder, adapter } = await loadDistillStudent(modelDir, s, rng);
  try {
    const vocab = decoder.config.vocabSize;
    const wrap = (text: string) => (prompt === null ? text : prompt.replace(SENTENCE_SLOT, () => text));
    adapter.train(true);
    // Dropout masks must be the same in GradCache's two passes over a chunk: replay the stream.
    const replay = new DropoutReplay(adapter.dropoutRng);
    const encode = (chunk: string[], chunkIndex: number): Tensor => {
      replay.enter(String(chunkIndex));
      const enc = encodeBatch(tokenizer, chunk.map(wrap), { maxLength: s.max_length, paddingSide: 'left' });
      for (const id of enc.inputIds) {
        if (id < 0 || id >= vocab) {
          throw new UnimeError(`token id ${id} is outside the decoder's vocabulary (${vocab} entries)`, { file: modelDir, fix: 'use the tokenizer that belongs to this checkpoint' });
        }
      }
      return tf.tidy(() => {
        const ids = tf.tensor2d(enc.inputIds, [enc.batchSize, enc.seqLen], 'int32');
        const mask = tf.tensor2d(enc.attentionMask, [enc.batchSize, enc.seqLen], 'int32');
        const { lastHiddenState } = decoder.forward({ inputIds: ids, attentionMask: mask });
        return poolEmbeddings(lastHiddenState, mask, 'last', true);
      });
    };
    const teacherOf = (x: string): Float32Array => cache.get(x)!;
    const direction = s.loss.kl_direction === 'teacher_student' ? 'teacher-student' : 'student-teacher';
    const data = new ShuffledBatches(texts, t.batch_size, rng.fork('data'), { shuffle: s.data.shuffle });
    const params = adapter.variables;
    ctx.log.info(`unime-distill: ${texts.length} texts, ${adapter.layers.length} LoRA layers (${adapter.numParameters} parameters), batch ${t.batch_size}`);

    const result = await train<string[]>({
      ...loopOptionsFromRecipe(t),
      params,
      data,
      outputDir: ctx.outputDir,
      rng,
      rngs: { 'lora-dropout': adapter.dropoutRng },
      // --force starts over; otherwise a rerun continues from the newest checkpoint.
      resume: !ctx.fresh,
      overwrite: ctx.fresh,
      label: 'unime-distill',
      step: (batch) => {
        replay.clear();
        const teacherRows = new Float32Array(batch.length * cache.dim);
        batch.forEach((x, i) => teacherRows.set(teacherOf(x), i * cache.dim));
        const teacher = tf.tensor2d(teacherRows, [batch.length, cache.dim]);
        try {
          const out = gradCacheStep<string, number>({
            params,
            // The teacher side is fixed: its "encoder" reads no parameter and just slices the cached rows.
            encoders: {
              query: encode,
              target: (rows: number[]) => tf.gather(teacher, tf.tensor1d(rows, 'int32')),
            },
            batch: { query: batch, target: batch.map((_, i) => i) },
            chunkSize: t.gradcache_chunk_size ?? batch.length,
            loss: (student, teacherEmb) =>
              inbatchKlDistillation(student, teacherEmb, { studentTemperature: s.loss.student_temperature, teacherTemperature: s.loss.teacher_temperature, direction }),
          });
          return { loss: out.loss, grads: out.grads, samples: batch.length };
        } finally {
          teacher.dispose();
        }
      },
      onCheckpoint: async (info) => {
        await saveLoraAdapter(path.join(info.dir, ADAPTER_DIR), decoder);
      },
    });
    const adapterDir = path.join(ctx.outputDir, ADAPTER_DIR);
    await saveLoraAdapter(adapterDir, decoder);
    const seconds = (performance.now() - t0) / 1000;
    ctx.log.info(`unime-distill: ${result.step} steps in ${seconds.toFixed(1)}s; adapter in ${adapterDir}`);
    return {
      ...lossSummary(result),
      adapter: adapterDir,
      adapter_files: [ADAPTER_CONFIG, ADAPTER_WEIGHTS],
      texts: texts.length,
      lora_layers: adapter.layers.length,
      lora_parameters: adapter.numParameters,
      seconds,
    };
  } finally {
    decoder.dispose();
    for (const v of adapter.variables) if (!v.isDisposed) v.dispose();
  }
}

attachStageRunner<UnimeDistillStage>('unime-distill', runUnimeDistill);
