/**
 * The recipe format: the top-level fields, the fields every stage shares, and the sub-schemas the
 * stage kinds reuse (model references, LoRA, the training loop, data references). The kinds
 * themselves live in kinds.ts.
 *
 * Values marked "not published" are our choices where the papers give no number (see
 * shared/REFERENCE.md); they are fields so a recipe can set them.
 */
import { z } from 'zod';

export const DEVICES = ['auto', 'cpu', 'native', 'cuda'] as const;
export const PRECISIONS = ['fp32', 'tf32', 'bf16'] as const;
export type Device = (typeof DEVICES)[number];
export type Precision = (typeof PRECISIONS)[number];

/** Lowercase letters, digits, '.', '_', '-'; starting with a letter or digit (so never `.` or `..`). */
export const RECIPE_NAME = /^[a-z0-9][a-z0-9._-]*$/;
/** Stage names are path segments in overrides and `${stages.<name>...}`: no dots, not all digits. */
export const STAGE_NAME = /^[a-z][a-z0-9_-]*$/;

const positive = () => z.number().positive();
const count = () => z.int().min(1);

/**
 * A model: a Hugging Face Hub id or a local checkpoint directory. The string form is shorthand for
 * `{path: <string>}`.
 */
export const modelRefSchema = z.preprocess(
  (v) => (typeof v === 'string' ? { path: v } : v),
  z.strictObject({
    /** Hub id (`owner/name`) or a directory with config.json and weights. */
    path: z.string().min(1),
    /** Hub revision (branch, tag or commit); ignored for local directories. */
    revision: z.string().min(1).default('main'),
  }),
).describe('a Hub id or checkpoint directory, or a mapping {path, revision}');
export type ModelRef = z.output<typeof modelRefSchema>;

export const QUANTIZATIONS = ['none', 'nf4', 'int8'] as const;
export const quantizationSchema = z.enum(QUANTIZATIONS);

export interface LoraDefaults {
  rank: number;
  alpha: number;
  dropout: number;
}

function loraObject(d: LoraDefaults) {
  return z.strictObject({
    rank: count().default(d.rank),
    alpha: positive().default(d.alpha),
    dropout: z.number().min(0).lt(1).default(d.dropout),
    /** `all-linear` = every linear layer of the language model (of the vision tower too with `vision_tower`). */
    target_modules: z.union([z.literal('all-linear'), z.array(z.string().min(1)).min(1)]).default('all-linear'),
  });
}

/** LoRA adapter settings; each stage kind supplies its own published defaults. */
export function loraSchema(d: LoraDefaults) {
  return loraObject(d).prefault({});
}

/** LoRA settings of a stage that trains a multimodal model's embeddings: `vision_tower` too. */
export function multimodalLoraSchema(d: LoraDefaults) {
  return loraObject(d)
    .extend({
      /**
       * Also adapt the vision tower: target_modules then selects among its linear layers too, by their
       * full names in the checkpoint, as peft does over the whole model (VLM2Vec's default target list,
       * which UniME trains with, names CLIP's q/k/v/out_proj). One peft adapter holds both parts.
       */
      vision_tower: z.boolean().default(false),
    })
    .prefault({});
}
export type LoraConfig = z.output<ReturnType<typeof loraSchema>>;

export const SCHEDULES = ['constant', 'linear', 'cosine'] as const;

export interface TrainDefaults {
  lr: number;
  epochs: number | null;
  max_steps: number | null;
  batch_size: number;
  gradcache_chunk_size: number | null;
  warmup_ratio: number;
  schedule: (typeof SCHEDULES)[number];
  weight_decay: number;
  grad_clip: number | null;
  log_every: number;
  save_every: number | null;
}

/** The optimisation loop shared by every training stage (AdamW + schedule + GradCache). */
export function trainLoopSchema(d: TrainDefaults) {
  return z
    .strictObject({
      lr: positive().default(d.lr),
      /** Passes over the data; the run stops at whichever of epochs / max_steps comes first. */
      epochs: positive().nullable().default(d.epochs),
      max_steps: count().nullable().default(d.max_steps),
      /** Global batch (in-batch negatives are drawn from all of it). */
      batch_size: count().default(d.batch_size),
      /** Samples per GradCache forward chunk; null = the whole batch in one forward pass. */
      gradcache_chunk_size: count().nullable().default(d.gradcache_chunk_size),
      warmup_ratio: z.number().min(0).lt(1).default(d.warmup_ratio),
      /** When set, replaces warmup_ratio. */
      warmup_steps: z.int().min(0).nullable().default(null),
      schedule: z.enum(SCHEDULES).default(d.schedule),
      weight_decay: z.number().min(0).default(d.weight_decay),
      /** Max global gradient norm; null = no clipping. */
      grad_clip: positive().nullable().default(d.grad_clip),
      optimizer: z
        .strictObject({
          name: z.literal('adamw').default('adamw'),
          beta1: z.number().min(0).lt(1).default(0.9),
          beta2: z.number().min(0).lt(1).default(0.999),
          eps: positive().default(1e-8),
        })
        .prefault({}),
      log_every: count().default(d.log_every),
      /** Checkpoint every N optimizer steps (and always at the end); null = only at the end. */
      save_every: count().nullable().default(d.save_every),
    })
    .superRefine((t, ctx) => {
      if (t.epochs === null && t.max_steps === null) {
        ctx.addIssue({ code: 'custom', path: ['max_steps'], message: 'expected train.epochs or train.max_steps to be set, found both null' });
      }
      if (t.gradcache_chunk_size !== null && t.gradcache_chunk_size > t.batch_size) {
        ctx.addIssue({
          code: 'custom',
          path: ['gradcache_chunk_size'],
          message: `expected at most batch_size (${t.batch_size}), found ${t.gradcache_chunk_size}`,
        });
      }
    })
    .prefault({});
}
export type TrainLoopConfig = z.output<ReturnType<typeof trainLoopSchema>>;

export const TEXT_FORMATS = ['auto', 'csv', 'jsonl', 'parquet'] as const;

/** Sentence data for stage 1 and the teacher: SimCSE-NLI style rows with sent0 / sent1 / hard_neg. */
export const textPairDataSchema = z.strictObject({
  /** A .csv, .jsonl or .parquet file (or a directory of them). */
  path: z.string().min(1),
  /** `auto` picks by file extension. */
  format: z.enum(TEXT_FORMATS).default('auto'),
  /** The columns whose texts are embedded; every non-empty cell is one text in the batch. */
  text_columns: z.array(z.string().min(1)).min(1).default(['sent0', 'sent1', 'hard_neg']),
  /** Use only the first N rows; null = all. */
  max_samples: count().nullable().default(null),
  shuffle: z.boolean().default(true),
});
export type TextPairData = z.output<typeof textPairDataSchema>;

/** `all` or an explicit list of dataset / subset names. */
export const datasetSelectionSchema = z
  .union([z.literal('all'), z.array(z.string().min(1)).min(1)])
  .describe('"all" or a list of dataset names');

export const MMEB_TRAIN_SUBSETS = [
  'ImageNet_1K', 'N24News', 'HatefulMemes', 'VOC2007', 'SUN397',
  'OK-VQA', 'A-OKVQA', 'DocVQA', 'InfographicsVQA', 'ChartQA', 'Visual7W',
  'VisDial', 'CIRR', 'VisualNews_t2i', 'VisualNews_i2t', 'MSCOCO_t2i', 'MSCOCO_i2t', 'NIGHTS', 'WebQA',
  'MSCOCO',
] as const;

/** MMEB-train (TIGER-Lab/MMEB-train) laid out locally: one folder per subset, images beside. */
export const mmebTrainDataSchema = z.strictObject({
  root: z.string().min(1),
  subsets: datasetSelectionSchema.default('all'),
  /** Rows kept per subset (the paper: 50k, giving 662k pairs); null = all. */
  cap_per_subset: count().nullable().default(50000),
  split: z.enum(['original', 'diverse_instruction']).default('original'),
  /**
   * Draw each sub-batch of this many rows from a single subset (VLM2Vec-V2 uses 64); null = batches
   * mix subsets. Not published for UniME.
   */
  sub_batch_size: count().nullable().default(null),
  /**
   * Sampling weight per subset, by name (VLM2Vec-V2's per-dataset `weight`): a sub-batch comes from a
   * subset with probability proportional to its rows times its weight; a subset not named weighs 1.
   * Needs sub_batch_size. Not published for UniME.
   */
  subset_weights: z.record(z.string().min(1), z.number().positive()).default({}),
});
export type MmebTrainData = z.output<typeof mmebTrainDataSchema>;

/** Image-text pairs for the CLIP-side methods. */
export const imageTextDataSchema = z.strictObject({
  /** A .parquet / .jsonl file or a directory of shards. */
  path: z.string().min(1),
  format: z.enum(['auto', 'jsonl', 'parquet']).default('auto'),
  /** Folder the image paths are relative to; null = next to the data file. */
  image_root: z.string().min(1).nullable().default(null),
  image_column: z.string().min(1).default('image'),
  caption_column: z.string().min(1).default('caption'),
  /**
   * A column with one hard-negative caption per row, false for its image (an attribute swapped, say):
   * NegCLIP's extra image -> text negatives, in clip-train's CLIP loss (not LIFT's cosine loss or
   * ProCLIP's align phase, which have no negatives) and in mllm-align's InfoNCE. null = none.
   */
  negative_column: z.string().min(1).nullable().default(null),
  max_samples: count().nullable().default(null),
});

/** Top-level fields. `stages` are validated one by one against their kind's schema. */
export const recipeHeaderSchema = z.strictObject({
  name: z.string().regex(RECIPE_NAME, { error: 'expected a name of lowercase letters, digits, ".", "_" and "-", starting with a letter or digit' }),
  description: z.string().default(''),
  seed: z.int().default(0),
  device: z.enum(DEVICES).default('auto'),
  precision: z.enum(PRECISIONS).default('fp32'),
  /** Default `runs/${name}`; relative paths are relative to the working directory. */
  output_dir: z.string().min(1),
  /** Free values for `${vars.<key>}` interpolation. */
  vars: z.preprocess((v) => (v === null ? {} : v), z.record(z.string(), z.unknown())).default({}),
  stages: z.array(z.unknown()).min(1),
});

/** Fields every stage has, whatever its kind. */
export function stageCommonShape<K extends string>(kind: K) {
  return {
    name: z.string().regex(STAGE_NAME, {
      error: 'expected a stage name of lowercase letters, digits, "_" and "-", starting with a letter',
    }),
    kind: z.literal(kind),
    description: z.string().default(''),
    /** Default `${output_dir}/<stage name>`. */
    output_dir: z.string().min(1),
    /**
     * Start from this checkpoint: the name of an earlier stage (its output dir), a directory or a
     * Hub id. null = start from `model` alone.
     */
    init_from: z.string().min(1).nullable().default(null),
    /** Overrides the recipe's precision for this stage. */
    precision: z.enum(PRECISIONS).optional(),
  };
}

/** A strict schema for a stage of `kind`: the common fields plus the kind's own. */
export function stageSchema<K extends string, T extends z.ZodRawShape>(kind: K, shape: T) {
  return z.strictObject({ ...stageCommonShape(kind), ...shape });
}

/** The fields every validated stage has. */
export interface StageCommon {
  name: string;
  kind: string;
  description: string;
  output_dir: string;
  init_from: string | null;
  precision?: Precision | undefined;
}

/** A validated stage of any kind: the common fields plus its kind's fields. */
export type StageConfig = StageCommon & { readonly [field: string]: unknown };

export type RecipeHeader = z.output<typeof recipeHeaderSchema>;

/** A validated recipe with defaults filled and interpolation done. */
export interface Recipe extends Omit<RecipeHeader, 'stages'> {
  stages: StageConfig[];
}
