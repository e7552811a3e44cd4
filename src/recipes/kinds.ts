/**
 * The stage kinds the recipe format knows, registered without runners: a recipe using them
 * validates and dry-runs; running one says the engine is not in this build yet until engine code
 * calls `attachStageRunner(kind, run)`.
 *
 * "not published" marks defaults the papers do not give (shared/REFERENCE.md); they are our choices.
 */
import { z } from 'zod';
import { registerStageKind } from './registry.js';
import {
  datasetSelectionSchema,
  imageTextDataSchema,
  loraSchema,
  multimodalLoraSchema,
  mmebTrainDataSchema,
  modelRefSchema,
  quantizationSchema,
  stageSchema,
  textPairDataSchema,
  trainLoopSchema,
} from './schema.js';

const positive = () => z.number().positive();
const count = () => z.int().min(1);

/** Published UniME prompts; `auto` in a recipe picks one by the model's architecture. */
export const PROMPT_TEMPLATES = {
  'phi3_5_v': {
    text: '<|user|>\n<sent>\nSummary above sentence in one word: <|end|>\n<|assistant|>\n',
    image: '<|user|>\n<|image_1|>\nSummary above image in one word: <|end|>\n<|assistant|>\n',
  },
  'llava_next_mistral': {
    text: '[INST] <sent>\nSummary above sentence in one word: [/INST]',
    image: '[INST] <image>\nSummary above image in one word: [/INST]',
  },
} as const;

/** `auto`, or a template containing `<sent>` where the text goes. */
const promptTemplateSchema = z
  .string()
  .refine((s) => s === 'auto' || s.includes('<sent>'), { error: 'expected "auto" or a template containing <sent>' });

// ---------------------------------------------------------------------------------------------
// synthetic-data: the bundled synthetic benchmark and tiny models, generated in seconds
export const SYNTHETIC_SIZES = ['tiny', 'small', 'medium'] as const;
export const syntheticDataSchema = stageSchema('synthetic-data', {
  /** Where the benchmark is written (train/eval sets, text pairs, models/). */
  out: z.string().min(1).default('data/synthetic'),
  size: z.enum(SYNTHETIC_SIZES).default('small'),
  /** null = the recipe's seed. */
  seed: z.int().nullable().default(null),
  /** Also write the tiny LLaVA and the teacher decoder under `<out>/models/`. */
  models: z.boolean().default(true),
});

// ---------------------------------------------------------------------------------------------
// teacher-embed: offline teacher embeddings for stage 1
export const teacherEmbedSchema = stageSchema('teacher-embed', {
  /** The paper's teacher is NV-Embed-v2. */
  teacher: modelRefSchema.prefault('nvidia/NV-Embed-v2'),
  /** Not published for this pipeline; NV-Embed-v2 itself mean-pools (after latent attention). */
  pooling: z.enum(['last', 'mean']).default('mean'),
  /** Prefix put before every text (e.g. NV-Embed's "Instruct: ...\nQuery: "). Not published: none. */
  instruction: z.string().default(''),
  normalize: z.boolean().default(true),
  data: textPairDataSchema,
  /** Not published. */
  max_length: count().default(128),
  /** Not published. */
  batch_size: count().default(64),
  /** Where the embedding cache is written; null = the stage's output_dir. */
  cache_dir: z.string().min(1).nullable().default(null),
  /**
   * Attend in both directions: set it when the teacher was trained so (a caption-contrastive stage,
   * given as init_from, whose adapters are merged into the teacher first).
   */
  bidirectional: z.boolean().default(false),
  /**
   * Import a cache made elsewhere instead of running the teacher; null = compute with the teacher.
   * parquet: a `key` (text) and an `embedding` (list<float>) column, LIFT's layout; or an `id` column
   * indexing `keys`. npy: a float32 [n, d] matrix whose row texts are listed in `keys` (.txt one per
   * line, .jsonl, .json), by default the file beside it with the same base name.
   */
  import: z
    .strictObject({
      path: z.string().min(1),
      format: z.enum(['auto', 'parquet', 'npy']).default('auto'),
      keys: z.string().min(1).nullable().default(null),
      normalize: z.boolean().default(true),
    })
    .nullable()
    .default(null),
});

// ---------------------------------------------------------------------------------------------
// unime-distill: UniME stage 1, textual discriminative knowledge distillation
export const unimeDistillSchema = stageSchema('unime-distill', {
  model: modelRefSchema,
  data: textPairDataSchema,
  prompt_template: promptTemplateSchema.default('auto'),
  /** Not published. */
  max_length: count().default(128),
  /** Rank 32 is published (QLoRA); alpha and dropout are not. */
  lora: loraSchema({ rank: 32, alpha: 64, dropout: 0.05 }),
  /** The paper trains with QLoRA (4-bit NF4 base weights). */
  quantization: quantizationSchema.default('nf4'),
  /** Directory of the teacher's cached embeddings (usually `${stages.<teacher stage>.output_dir}`). */
  teacher_cache: z.string().min(1),
  loss: z
    .strictObject({
      /** Not published. */
      student_temperature: positive().default(0.05),
      /** Not published. */
      teacher_temperature: positive().default(0.05),
      /**
       * `teacher_student` = KL(P_teacher || P_student), what most implementations compute;
       * `student_teacher` = KL(P_student || P_teacher), as printed in the paper.
       */
      kl_direction: z.enum(['teacher_student', 'student_teacher']).default('teacher_student'),
    })
    .prefault({}),
  /** Published: lr 5e-4, 2 epochs, batch 768. The rest is not published. */
  train: trainLoopSchema({
    lr: 5e-4,
    epochs: 2,
    max_steps: null,
    batch_size: 768,
    gradcache_chunk_size: 64,
    warmup_ratio: 0.05,
    schedule: 'linear',
    weight_decay: 0,
    grad_clip: 1.0,
    log_every: 10,
    save_every: null,
  }),
});

// ---------------------------------------------------------------------------------------------
// caption-contrastive: LLM2CLIP stage 1, contrastive fine-tuning of an LLM into a text embedder
export const captionContrastiveSchema = stageSchema('caption-contrastive', {
  model: modelRefSchema,
  /**
   * text_columns name the query, its positive and (optionally) its hard negative, in that order;
   * LLM2CLIP's positives are two captions of one image.
   */
  data: textPairDataSchema,
  /** Published: mean pooling (over the non-instruction tokens; there is no instruction here). */
  pooling: z.enum(['last', 'mean']).default('mean'),
  /** Published: bidirectional attention (LLM2Vec-style). */
  bidirectional: z.boolean().default(true),
  /** Not published. */
  max_length: count().default(128),
  /** Published: rank 16, alpha 32; dropout is not published. null = full fine-tuning of every decoder weight. */
  lora: loraSchema({ rank: 16, alpha: 32, dropout: 0.05 }).nullable(),
  loss: z
    .strictObject({
      /** Logit scale on the cosines: cross-entropy over scale * cos(query, [all positives; all hard negatives]). Published: 50 (tau 0.02). */
      scale: positive().default(50),
    })
    .prefault({}),
  /** Not published in shared/REFERENCE.md: our choices. */
  train: trainLoopSchema({
    lr: 2e-4,
    epochs: 1,
    max_steps: null,
    batch_size: 256,
    gradcache_chunk_size: 32,
    warmup_ratio: 0.05,
    schedule: 'linear',
    weight_decay: 0,
    grad_clip: 1.0,
    log_every: 10,
    save_every: null,
  }),
});

// ---------------------------------------------------------------------------------------------
// unime-hardneg: UniME stage 2, hard-negative enhanced instruction tuning on MMEB-train
export const unimeHardnegSchema = stageSchema('unime-hardneg', {
  model: modelRefSchema,
  data: mmebTrainDataSchema,
  /** Published: 336x336, the backbones' own size; null = the model's own (a different value is refused). */
  image_size: count().nullable().default(null),
  /** Not published. */
  max_length: count().default(256),
  /** Image placeholder used in the MMEB instructions; `auto` = the backbone's own token. */
  image_token: z.string().min(1).default('auto'),
  loss: z
    .strictObject({
      /** `hardneg` = UniME (positive + k filtered hard negatives); `inbatch` = VLM2Vec InfoNCE over the whole batch. */
      mode: z.enum(['hardneg', 'inbatch']).default('hardneg'),
      temperature: positive().default(0.02),
      /** Candidates with cos(q, c) > cos(q, c+) + beta are treated as false negatives. */
      false_negative_beta: z.number().default(0.1),
      /** k hard negatives per query, from the global batch. */
      hard_negatives: count().default(8),
      /** With fewer than k valid negatives: `duplicate` existing ones (the paper) or `mask` the missing slots. */
      when_fewer_than_k: z.enum(['duplicate', 'mask']).default('duplicate'),
      /**
       * Also put each row's own neg_text / neg_image_path among the batch's candidates (subsets that
       * have them). Not part of UniME's published recipe: off by default.
       */
      dataset_negatives: z.boolean().default(false),
      /**
       * A candidate identical to a row's positive (the same text and image: a class label or a short
       * answer that several rows of a batch share) is the positive again, so it is left out of that
       * row's negatives in both modes. `false` counts such copies as negatives, as a literal reading of
       * the published losses does: with short answers that repeat in a batch the query is then pushed
       * from its own answer as hard as it is pulled to it.
       */
      exclude_positive_copies: z.boolean().default(true),
      /**
       * mode hardneg: the first N steps use every in-batch candidate (VLM2Vec's InfoNCE) before the
       * top-k hard negatives take over. Not part of UniME (0 = off): a weak start whose positives rank
       * below their hardest negatives can lower the hard-negative loss fastest by making every
       * embedding the same (loss ln(k + 1)), the collapse FaceNet reports for hardest-negative mining.
       */
      inbatch_warmup_steps: z.number().int().nonnegative().default(0),
    })
    .prefault({}),
  /** Rank 16 is published; alpha 64 and dropout 0.1 are VLM2Vec's. */
  lora: multimodalLoraSchema({ rank: 16, alpha: 64, dropout: 0.1 }),
  quantization: quantizationSchema.default('none'),
  /**
   * Published: lr 1e-4 (Phi-3.5-V; 2e-5 for LLaVA-1.6), 1000 steps, batch 1024, GradCache.
   * Chunk size 8 and 10% warmup follow VLM2Vec; the rest is not published.
   */
  train: trainLoopSchema({
    lr: 1e-4,
    epochs: null,
    max_steps: 1000,
    batch_size: 1024,
    gradcache_chunk_size: 8,
    warmup_ratio: 0.1,
    schedule: 'linear',
    weight_decay: 0,
    grad_clip: 1.0,
    log_every: 10,
    save_every: 250,
  }),
}).superRefine((s, ctx) => {
  if (s.loss.mode === 'hardneg' && s.loss.hard_negatives >= s.train.batch_size) {
    ctx.addIssue({
      code: 'custom',
      path: ['loss', 'hard_negatives'],
      message: `expected fewer hard negatives than train.batch_size (${s.train.batch_size}), found ${s.loss.hard_negatives}`,
    });
  }
});

// ---------------------------------------------------------------------------------------------
// eval: benchmark suites
export const EVAL_SUITES = ['mmeb', 'retrieval', 'sugarcrepe', 'zeroshot'] as const;
export const evalSchema = stageSchema('eval', {
  suite: z.enum(EVAL_SUITES),
  /** The base model; a trained adapter comes in through init_from. */
  model: modelRefSchema,
  /**
   * root: the suite's data (MMEB-eval folder; retrieval annotations file or folder; SugarCrepe subset
   * folder; zero-shot ImageFolder root or image,label table). images: SugarCrepe's COCO val2017 folder,
   * or the folder retrieval image paths are relative to. classnames, templates: zero-shot files.
   */
  data: z.strictObject({
    root: z.string().min(1),
    images: z.string().min(1).optional(),
    classnames: z.string().min(1).optional(),
    templates: z.string().min(1).optional(),
  }),
  datasets: datasetSelectionSchema.default('all'),
  batch_size: count().default(16),
  /** null = the model's own input size. */
  image_size: count().nullable().default(null),
  max_length: count().default(256),
  image_token: z.string().min(1).default('auto'),
  /**
   * retrieval/sugarcrepe/zeroshot: the text of an image input, and of a text input (<sent> = the text);
   * null = the model's own: UniME's for an MLLM, none (the bare caption) for a clip-train model.
   */
  image_prompt: z.string().nullable().default(null),
  text_prompt: z.string().includes('<sent>').nullable().default(null),
});

// ---------------------------------------------------------------------------------------------
// clip-train: CLIP-side methods with a frozen LLM text encoder
const clipLoss = {
  /** CLIP's 1/0.07. */
  logit_scale_init: positive().default(1 / 0.07),
  /** The learnable scale is clamped to at most this value. */
  logit_scale_max: positive().default(100),
};

/**
 * The vision tower: pretrained weights (`model`: a CLIP / SigLIP checkpoint, or the model/ folder of an
 * earlier clip-train stage), or trained from scratch as the `arch` preset when `model` is null.
 */
function visionSchema(d: { arch: string; pooling: 'cls' | 'mean' }) {
  return z
    .strictObject({
      /** null = train `arch` from scratch. */
      model: modelRefSchema.nullable().default(null),
      arch: z.string().min(1).default(d.arch),
      pooling: z.enum(['cls', 'mean']).default(d.pooling),
      /** Layer-wise lr decay: layer l of L gets lr * layer_decay^(L + 1 - l) (embeddings l = 0); 1 = off. */
      layer_decay: z.number().gt(0).max(1).default(1),
    })
    .prefault({});
}

const clipCommon = {
  /** The frozen LLM text encoder. */
  text_model: modelRefSchema,
  /**
   * Cached text features: a teacher-embed stage's cache (its output dir, e.g. `${stages.teacher.output_dir}`;
   * LLM2CLIP's raw float32 or LIFT's parquet go through its `import:`); null = the stage computes them
   * with text_model and `text_encoder` into `<output_dir>/text-features`.
   */
  text_features: z.string().min(1).nullable().default(null),
  /** How text_model embeds captions when text_features is null (LIFT: the last token suffices). */
  text_encoder: z
    .strictObject({
      pooling: z.enum(['last', 'mean']).default('last'),
      instruction: z.string().default(''),
      max_length: count().default(128),
      bidirectional: z.boolean().default(false),
      batch_size: count().default(64),
    })
    .prefault({}),
  data: imageTextDataSchema,
  /** Held-out image-caption pairs (same layout as data) scored for retrieval before and after training; null = none. */
  eval_data: z.string().min(1).nullable().default(null),
  image_size: count().default(224),
};

const llm2clipSchema = stageSchema('clip-train', {
  method: z.literal('llm2clip'),
  ...clipCommon,
  vision: visionSchema({ arch: 'vit-l-14', pooling: 'cls' }),
  adapter: z
    .strictObject({
      blocks: count().default(4),
      hidden_mult: count().default(2),
      /** Not published as a default; EVA02-L/14 CLIP's joint space is 768. */
      embed_dim: count().default(768),
    })
    .prefault({}),
  loss: z.strictObject({ ...clipLoss }).prefault({}),
  /** Published: lr 1e-5, weight decay 0.05, batch 4096. Epochs and warmup are not published. */
  train: trainLoopSchema({
    lr: 1e-5,
    epochs: 4,
    max_steps: null,
    batch_size: 4096,
    gradcache_chunk_size: null,
    warmup_ratio: 0.05,
    schedule: 'cosine',
    weight_decay: 0.05,
    grad_clip: 1.0,
    log_every: 10,
    save_every: 1000,
  }),
});

const liftSchema = stageSchema('clip-train', {
  method: z.literal('lift'),
  ...clipCommon,
  vision: visionSchema({ arch: 'vit-b-16', pooling: 'mean' }),
  head: z.strictObject({ hidden_dim: count().default(4096), out_dim: count().default(4096) }).prefault({}),
  loss: z
    .strictObject({
      /** `infonce` = CLIP loss; `cosine` = mean(1 - cos) over positives only (no negatives, no temperature). */
      type: z.enum(['infonce', 'cosine']).default('infonce'),
      ...clipLoss,
    })
    .prefault({}),
  /** Not published as a recipe default: our choices. */
  train: trainLoopSchema({
    lr: 5e-4,
    epochs: 32,
    max_steps: null,
    batch_size: 4096,
    gradcache_chunk_size: null,
    warmup_ratio: 0.05,
    schedule: 'cosine',
    weight_decay: 0.2,
    grad_clip: 1.0,
    log_every: 10,
    save_every: 1000,
  }),
}).superRefine((s, ctx) => {
  if (s.loss.type === 'cosine' && s.data.negative_column !== null) {
    ctx.addIssue({ code: 'custom', path: ['data', 'negative_column'], message: 'the cosine loss has no negatives to add hard-negative captions to: set loss.type to infonce, or negative_column to null' });
  }
});

const proclipSchema = stageSchema('clip-train', {
  method: z.literal('proclip'),
  ...clipCommon,
  /** `align`: only the adapter, against the frozen CLIP text encoder; `finetune`: adapter + image encoder. */
  phase: z.enum(['align', 'finetune']).default('align'),
  vision: visionSchema({ arch: 'vit-l-14', pooling: 'cls' }),
  /** ProCLIP's adapter on the LLM feature; its width is not published (our choice: one residual block of 4d). */
  adapter: z.strictObject({ blocks: count().default(1), hidden_mult: count().default(4) }).prefault({}),
  /** The CLIP text encoder the adapter is aligned to (phase align). */
  clip_text_model: modelRefSchema.nullable().default(null),
  loss: z
    .strictObject({
      ...clipLoss,
      /** lambda on the self-distillation terms in phase finetune. Not published. */
      distill_weight: z.number().min(0).default(1.0),
      /** EMA decay of the teacher image encoder. Not published. */
      ema_decay: z.number().min(0).lt(1).default(0.999),
      /** SmoothL1 beta of the structure term. Not published. */
      smooth_l1_beta: positive().default(1.0),
      /** The paper writes sums over the batch and its pairs; `mean` keeps the lr independent of the batch size. */
      reduction: z.enum(['mean', 'sum']).default('mean'),
    })
    .prefault({}),
  /** Not published as a recipe default: our choices. */
  train: trainLoopSchema({
    lr: 1e-5,
    epochs: 1,
    max_steps: null,
    batch_size: 1024,
    gradcache_chunk_size: null,
    warmup_ratio: 0.05,
    schedule: 'cosine',
    weight_decay: 0.05,
    grad_clip: 1.0,
    log_every: 10,
    save_every: 1000,
  }),
}).superRefine((s, ctx) => {
  if (s.phase === 'align' && s.clip_text_model === null) {
    ctx.addIssue({ code: 'custom', path: ['clip_text_model'], message: 'expected a CLIP text encoder for phase align, found null' });
  }
  if (s.phase === 'align' && s.data.negative_column !== null) {
    ctx.addIssue({ code: 'custom', path: ['data', 'negative_column'], message: 'phase align distils the adapter and has no contrastive loss: hard-negative captions apply in phase finetune; set negative_column to null' });
  }
});

export const clipTrainSchema = z.discriminatedUnion('method', [llm2clipSchema, liftSchema, proclipSchema]);

// mllm-align: make a base MLLM's parts work together before UniME (the alignment pretraining a
// released MLLM has already had); the quickstart uses it on its tiny random LLaVA.
export const mllmAlignSchema = stageSchema('mllm-align', {
  /** A LLaVA-family checkpoint (llava, llava_next, llava_onevision). */
  model: modelRefSchema,
  /**
   * A CLIP vision checkpoint whose tower replaces the model's before training, e.g. a clip-train
   * stage's `${stages.vision.output_dir}/model`; it must have the model's tower shape. null = keep it.
   */
  vision_from: z.string().min(1).nullable().default(null),
  /** Image-caption pairs (the clip-train layout). */
  data: imageTextDataSchema,
  /** Held-out pairs (same layout) whose R@1 both ways is logged before and after; null = none. */
  eval_data: z.string().min(1).nullable().default(null),
  /** How an image and a caption are put to the model; `<sent>` is where the caption goes. */
  prompts: z
    .strictObject({
      image: z.string().min(1).default('<image>\nSummary above image in one word:'),
      text: z
        .string()
        .min(1)
        .refine((t) => t.includes('<sent>'), { message: 'expected the text prompt to contain <sent>' })
        .default('<sent>\nSummary above sentence in one word:'),
    })
    .prefault({}),
  max_length: count().default(64),
  /** What trains; the rest stays frozen. */
  train_parts: z
    .array(z.enum(['projector', 'decoder', 'vision']))
    .min(1)
    .default(['projector', 'decoder']),
  /** In-batch InfoNCE from each image to its caption (the other captions of the batch are the negatives). */
  loss: z.strictObject({ temperature: positive().default(0.05) }).prefault({}),
  train: trainLoopSchema({
    lr: 5e-4,
    epochs: null,
    max_steps: 200,
    batch_size: 64,
    gradcache_chunk_size: null,
    warmup_ratio: 0.05,
    schedule: 'linear',
    weight_decay: 0,
    grad_clip: 1.0,
    log_every: 10,
    save_every: 100,
  }),
});

export type SyntheticDataStage = z.output<typeof syntheticDataSchema>;
export type TeacherEmbedStage = z.output<typeof teacherEmbedSchema>;
export type UnimeDistillStage = z.output<typeof unimeDistillSchema>;
export type UnimeHardnegStage = z.output<typeof unimeHardnegSchema>;
export type CaptionContrastiveStage = z.output<typeof captionContrastiveSchema>;
export type EvalStage = z.output<typeof evalSchema>;
export type ClipTrainStage = z.output<typeof clipTrainSchema>;
export type MllmAlignStage = z.output<typeof mllmAlignSchema>;
export type BuiltinStage = SyntheticDataStage | TeacherEmbedStage | UnimeDistillStage | UnimeHardnegStage | EvalStage | ClipTrainStage | CaptionContrastiveStage | MllmAlignStage;

registerStageKind({
  kind: 'synthetic-data',
  schema: syntheticDataSchema,
  description: 'generate the synthetic MMEB-layout benchmark and tiny models (tools/synth)',
  inputs: (s) => ({ out: s.out }),
});
registerStageKind({
  kind: 'teacher-embed',
  schema: teacherEmbedSchema,
  description: 'embed the stage-1 texts with a teacher LLM embedder and cache them',
  inputs: (s) => ({
    teacher: s.import === null ? s.teacher.path : null,
    data: s.data.path,
    import: s.import?.path,
    import_keys: s.import?.keys,
  }),
});
registerStageKind({
  kind: 'unime-distill',
  schema: unimeDistillSchema,
  description: 'UniME stage 1: textual discriminative knowledge distillation (LoRA on the LLM)',
  inputs: (s) => ({ model: s.model.path, data: s.data.path, teacher_cache: s.teacher_cache }),
});
registerStageKind({
  kind: 'caption-contrastive',
  schema: captionContrastiveSchema,
  description: 'LLM2CLIP stage 1: caption-contrastive fine-tuning of an LLM into a text embedder (LoRA or full)',
  inputs: (s) => ({ model: s.model.path, data: s.data.path }),
});
registerStageKind({
  kind: 'unime-hardneg',
  schema: unimeHardnegSchema,
  description: 'UniME stage 2: hard-negative enhanced instruction tuning on MMEB-train',
  inputs: (s) => ({ model: s.model.path, data: s.data.root }),
});
registerStageKind({
  kind: 'eval',
  schema: evalSchema,
  description: 'evaluate on MMEB, caption retrieval, SugarCrepe or zero-shot classification',
  inputs: (s) => ({ model: s.model.path, data: s.data.root }),
});
registerStageKind({
  kind: 'clip-train',
  schema: clipTrainSchema,
  description: 'train a CLIP-side model on a frozen LLM text encoder (LLM2CLIP, LIFT, ProCLIP)',
  inputs: (s) => ({
    text_model: s.text_model.path,
    text_features: s.text_features,
    vision: s.vision.model?.path,
    data: s.data.path,
  }),
});
registerStageKind({
  kind: 'mllm-align',
  schema: mllmAlignSchema,
  description: 'align a base MLLM (tower from a CLIP checkpoint, projector and decoder trained on image-caption pairs) into a new checkpoint',
  inputs: (s) => ({ model: s.model.path, vision_from: s.vision_from, data: s.data.path }),
});
