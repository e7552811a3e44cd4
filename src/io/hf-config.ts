/**
 * Hugging Face `config.json`: parsed permissively (every field is kept, unknown ones included),
 * with the types checked of the fields unime relies on, wherever they appear, including the
 * nested `text_config` / `vision_config` of multimodal models.
 */
import { z } from 'zod';
import { UnimeError } from '../errors.js';
import { previewJson, readCheckpointJson } from './json.js';

export class HfConfigError extends UnimeError {}

// The core sizes must be real numbers when present; elsewhere null means "not set", as
// transformers writes it (e.g. "architectures": null, "rope_scaling": null).
const positiveInt = z.number().int().positive();
const positiveNumber = z.number().positive();

const ropeScaling = z.looseObject({
  type: z.string().nullish(),
  rope_type: z.string().nullish(),
  factor: z.number().nullish(),
});

const fields = {
  model_type: z.string().nullish(),
  architectures: z.array(z.string()).nullish(),
  hidden_size: positiveInt.optional(),
  intermediate_size: positiveInt.optional(),
  num_hidden_layers: positiveInt.optional(),
  num_attention_heads: positiveInt.optional(),
  num_key_value_heads: positiveInt.nullish(),
  vocab_size: positiveInt.optional(),
  max_position_embeddings: positiveInt.nullish(),
  rms_norm_eps: positiveNumber.nullish(),
  layer_norm_eps: positiveNumber.nullish(),
  rope_theta: positiveNumber.nullish(),
  rope_scaling: ropeScaling.nullish(),
  torch_dtype: z.string().nullish(),
  dtype: z.string().nullish(),
  tie_word_embeddings: z.boolean().nullish(),
  image_token_index: z.number().int().nullish(),
};

/** A parsed config.json: the checked fields typed, everything else kept as is. */
export interface HfConfig {
  model_type?: string | null;
  architectures?: string[] | null;
  hidden_size?: number;
  intermediate_size?: number;
  num_hidden_layers?: number;
  num_attention_heads?: number;
  num_key_value_heads?: number | null;
  vocab_size?: number;
  max_position_embeddings?: number | null;
  rms_norm_eps?: number | null;
  layer_norm_eps?: number | null;
  rope_theta?: number | null;
  rope_scaling?: { type?: string | null; rope_type?: string | null; factor?: number | null; [key: string]: unknown } | null;
  torch_dtype?: string | null;
  dtype?: string | null;
  tie_word_embeddings?: boolean | null;
  image_token_index?: number | null;
  text_config?: HfConfig | null;
  vision_config?: HfConfig | null;
  [key: string]: unknown;
}

export const HfConfigSchema: z.ZodType<HfConfig> = z.looseObject({
  ...fields,
  text_config: z.lazy(() => HfConfigSchema).nullish(),
  vision_config: z.lazy(() => HfConfigSchema).nullish(),
});

/** What each checked field must be, in words, for error messages. */
const EXPECTED: Record<string, string> = {
  model_type: 'a string',
  architectures: 'a list of strings',
  hidden_size: 'a positive integer',
  intermediate_size: 'a positive integer',
  num_hidden_layers: 'a positive integer',
  num_attention_heads: 'a positive integer',
  num_key_value_heads: 'a positive integer',
  vocab_size: 'a positive integer',
  max_position_embeddings: 'a positive integer',
  rms_norm_eps: 'a positive number',
  layer_norm_eps: 'a positive number',
  rope_theta: 'a positive number',
  rope_scaling: 'an object or null',
  type: 'a string',
  rope_type: 'a string',
  factor: 'a number',
  torch_dtype: 'a string such as "bfloat16"',
  dtype: 'a string such as "bfloat16"',
  tie_word_embeddings: 'true or false',
  image_token_index: 'an integer',
  text_config: 'an object (a nested model config)',
  vision_config: 'an object (a nested model config)',
};

function fieldPath(p: readonly PropertyKey[]): string {
  let s = '';
  for (const k of p) s += typeof k === 'number' ? `[${k}]` : (s ? '.' : '') + String(k);
  return s;
}

function valueAt(root: unknown, p: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const k of p) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function show(v: unknown): string {
  return v === undefined ? 'nothing' : previewJson(v);
}

/** Validate an already parsed config object; `label` names the file in errors. */
export function parseHfConfig(value: unknown, label: string): HfConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HfConfigError(`config must be a JSON object, got ${Array.isArray(value) ? 'an array' : show(value)}`, {
      file: label,
      fix: 'a Hugging Face config.json is an object such as {"model_type": "llama", ...}',
    });
  }
  let r;
  try {
    r = HfConfigSchema.safeParse(value);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw new HfConfigError('config nests objects too deeply to check', { file: label, fix: 'this is not a Hugging Face config.json; re-download it', cause: e });
  }
  if (r.success) return r.data;
  const problems = r.error.issues.map((issue) => {
    const p = issue.path;
    const last = [...p].reverse().find((k) => typeof k === 'string');
    const isElement = typeof p[p.length - 1] === 'number';
    const expected = isElement && last === 'architectures' ? 'a string' : EXPECTED[String(last)];
    const what = expected ? `must be ${expected}` : issue.message;
    return { field: fieldPath(p), text: `${what}, got ${show(valueAt(value, p))}` };
  });
  const first = problems[0]!;
  const more = problems.length > 1 ? `; also ${problems.slice(1, 6).map((q) => `${q.field} ${q.text}`).join('; ')}${problems.length > 6 ? ` and ${problems.length - 6} more` : ''}` : '';
  throw new HfConfigError(first.text + more, { file: label, field: first.field, fix: 'correct the field in config.json (compare with the model card on the Hub)' });
}

/** Read and validate `config.json` from a checkpoint directory, or a config file named directly. */
export async function readHfConfig(dirOrFile: string): Promise<HfConfig> {
  const { value, file } = await readCheckpointJson(dirOrFile, 'config.json', (problem, details) => new HfConfigError(problem, details), {
    missing: 'point at a Hugging Face checkpoint directory (it has config.json beside the weights)',
    invalid: 'repair the JSON (or re-download config.json)',
  });
  return parseHfConfig(value, file);
}

export interface ConfigDescription {
  modelType: string | undefined;
  architectures: string[];
  textModelType?: string;
  visionModelType?: string;
}

/** The few facts `unime inspect` shows about an architecture. */
export function describeConfig(cfg: HfConfig): ConfigDescription {
  const d: ConfigDescription = {
    modelType: cfg.model_type ?? undefined,
    architectures: [...(cfg.architectures ?? [])],
  };
  const t = cfg.text_config?.model_type;
  const v = cfg.vision_config?.model_type;
  if (t) d.textModelType = t;
  if (v) d.visionModelType = v;
  return d;
}
