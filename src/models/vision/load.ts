/**
 * Build a CLIP or SigLIP vision tower from a Hugging Face checkpoint: a vision model's own config.json,
 * or the vision_config of a CLIP / SigLIP / LLaVA-family config; the tensors under the tower's prefix
 * are checked against the shapes the config implies, then read one at a time into tfjs variables.
 */
import { type Checkpoint, openCheckpoint } from '../../io/checkpoint.js';
import { type HfConfig, readHfConfig } from '../../io/hf-config.js';
import { tf } from '../../runtime/tf.js';
import { registeredVisionTowerTypes, visionTowerEntry, type VisionTowerEntry } from '../registry.js';
import { ModelConfigError } from '../text/config.js';
import { checkpointConfigFile, checkWeights, readWeightVariables, WeightMismatchError } from '../weights.js';
import { CLIP_VIT_L14_336, type VisionConfig } from './config.js';
import { expectedVisionWeights, VisionTransformer } from './tower.js';

export { CLIP_VIT_L14_336 } from './config.js';

export interface LoadVisionTowerOptions {
  /**
   * Key prefix of the tower's tensors: 'vision_model.' (CLIP / SigLIP checkpoints),
   * 'vision_tower.vision_model.' or 'model.vision_tower.vision_model.' (LLaVA family). Found from the
   * checkpoint when omitted.
   */
  prefix?: string;
  /** Use this config instead of reading config.json. */
  config?: HfConfig;
  /** Where config.json is (default: beside the weights). */
  configFile?: string;
  /** Fail on tensors under the prefix that the tower does not use (default true). */
  strict?: boolean;
  /** Create trainable variables (default true). */
  trainable?: boolean;
}

export interface VisionTowerSource {
  checkpoint: string;
  configFile: string;
  prefix: string;
  /** '' or 'vision_config.' */
  configField: string;
}

export interface LoadedVisionTower extends VisionTransformer {
  readonly source: VisionTowerSource;
}

/** Prefixes tried, in order, when none is given. */
export const VISION_PREFIXES = [
  'vision_model.',
  'vision_tower.vision_model.',
  'model.vision_tower.vision_model.',
  // Phi-3.5-V (remote code): the CLIP tower sits inside the image embedding module
  'model.vision_embed_tokens.img_processor.vision_model.',
  'vision_tower.',
  'model.vision_tower.',
  '',
];

/** Buffers some checkpoints carry that no model reads. */
const IGNORED = /(^|\.)embeddings\.position_ids$/;
/** What a tower's own tensors start with, to tell them apart when the prefix is empty. */
const TOWER_KEY = /^(embeddings\.|encoder\.|pre_layrnorm\.|post_layernorm\.|head\.)/;

/** The vision model_type a multimodal config implies when its vision_config does not say (transformers' defaults). */
const DEFAULT_VISION_TYPE: Record<string, string> = {
  clip: 'clip_vision_model',
  siglip: 'siglip_vision_model',
  llava: 'clip_vision_model',
  llava_next: 'clip_vision_model',
  llava_onevision: 'siglip_vision_model',
};

export async function loadVisionTower(dirOrFile: string, options: LoadVisionTowerOptions = {}): Promise<LoadedVisionTower> {
  const configFile = options.configFile ?? (await checkpointConfigFile(dirOrFile));
  const top = options.config ?? (await readHfConfig(configFile));
  const { entry, cfg, fieldPrefix } = selectVisionConfig(top, configFile);
  const config = entry.buildConfig(cfg, { file: configFile, fieldPrefix });

  const ckpt = await openCheckpoint(dirOrFile);
  let weights = new Map<string, tf.Variable>();
  try {
    const prefix = options.prefix ?? detectPrefix(ckpt);
    const withHead = config.useHead ?? ckpt.has(`${prefix}head.probe`);
    const expected = expectedVisionWeights(config, withHead);
    checkWeights(ckpt, prefix, expected, {
      what: `the ${config.modelType} vision tower`,
      configFile,
      prefixLabel: 'tower',
      strict: options.strict ?? true,
      // a head the config turns off (vision_use_head: false) is left unread, as transformers does
      tolerated: (rel) => IGNORED.test(rel) || (prefix === '' && !TOWER_KEY.test(rel)) || (config.useHead === false && rel.startsWith('head.')),
    });
    weights = await readWeightVariables(ckpt, prefix, expected, options.trainable ?? true);
    const tower = new VisionTransformer(config, weights) as VisionTransformer & { source: VisionTowerSource };
    tower.source = { checkpoint: dirOrFile, configFile, prefix, configField: fieldPrefix };
    return tower;
  } catch (e) {
    for (const v of weights.values()) v.dispose();
    throw e;
  } finally {
    await ckpt.close();
  }
}

/** The tower's config: the top level when its model_type is a vision tower, else vision_config. */
export function selectVisionConfig(top: HfConfig, file: string): { entry: VisionTowerEntry; cfg: HfConfig; fieldPrefix: string } {
  const known = registeredVisionTowerTypes();
  const topType = top.model_type ?? undefined;
  if (topType !== undefined) {
    const e = visionTowerEntry(topType);
    if (e) return { entry: e, cfg: top, fieldPrefix: '' };
  }
  const nested = top.vision_config;
  if (nested) {
    const t = nested.model_type ?? (topType !== undefined ? DEFAULT_VISION_TYPE[topType] : undefined);
    if (t === undefined) {
      throw new ModelConfigError('is missing: the vision model type of this multimodal config is unknown', {
        file,
        field: 'vision_config.model_type',
        fix: `add the vision tower's model_type (one of ${known.join(', ')})`,
      });
    }
    const e = visionTowerEntry(t);
    if (e) return { entry: e, cfg: nested, fieldPrefix: 'vision_config.' };
    throw new ModelConfigError(`vision tower type ${JSON.stringify(t)} is not supported (supported: ${known.join(', ')})`, { file, field: 'vision_config.model_type' });
  }
  const img = top.img_processor as { name?: unknown } | undefined;
  if (topType === 'phi3_v' && (img?.name ?? 'clip_vision_model') === 'clip_vision_model') {
    return { entry: visionTowerEntry('clip_vision_model')!, cfg: CLIP_VIT_L14_336, fieldPrefix: 'img_processor.' };
  }
  throw new ModelConfigError(
    topType === undefined ? 'is missing' : `${JSON.stringify(topType)} is not a supported vision tower and has no vision_config (supported: ${known.join(', ')})`,
    { file, field: 'model_type', fix: 'point at a CLIP or SigLIP vision checkpoint, or a multimodal one with such a vision_config' },
  );
}

function detectPrefix(ckpt: Checkpoint): string {
  for (const p of VISION_PREFIXES) if (ckpt.has(`${p}embeddings.patch_embedding.weight`)) return p;
  const sample = ckpt.names.slice(0, 5).join(', ');
  throw new WeightMismatchError(
    `no vision patch embedding found (looked for ${VISION_PREFIXES.map((p) => `${p}embeddings.patch_embedding.weight`).join(', ')}; the checkpoint starts with ${sample})`,
    { file: ckpt.indexPath ?? ckpt.files[0] ?? ckpt.path, fix: 'pass the prefix of the vision tower tensors as {prefix: "..."}' },
  );
}

