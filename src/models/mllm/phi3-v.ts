/**
 * Phi-3.5-V (microsoft/Phi-3.5-vision-instruct, model_type "phi3_v", remote code Phi3VForCausalLM):
 * a CLIP ViT-L/14-336 tower (`model.vision_embed_tokens.img_processor`), the HD transform of the
 * image into a global view and up to num_crops crops, a 2x2 merge of each crop's patch features into
 * 4C channels, learned separators (sub_GN after every row of merged tokens, glb_GN between the crops
 * and the global view), the img_projection MLP (Linear, GELU, Linear) and the Phi-3 decoder.
 *
 * The image features of one image, as the reference's hd_feature_transform orders them:
 *   [crops as one (rows*m) x (cols*m) grid, sub_GN after each of its rows] [glb_GN]
 *   [global view m x m, sub_GN after each row]                   m = tower grid / 2 (12 for 336/14)
 * and they replace, in order, the prompt positions that Phi3VProcessor fills with -k for image k.
 *
 * Real checkpoints have no vision_config: the tower is CLIP ViT-L/14-336, as the modeling code
 * builds it. A vision_config (model_type clip_vision_model) in config.json replaces it; that is how
 * small test checkpoints describe a smaller tower, and every size here follows the tower's config.
 */
import { UnimeError } from '../../errors.js';
import { openCheckpoint } from '../../io/checkpoint.js';
import { readHfConfig, type HfConfig } from '../../io/hf-config.js';
import type { RgbImage } from '../../images/decode.js';
import { hdImageTokens, hdPreprocess, readHdProcessorConfig, type HdProcessorConfig } from '../../images/hd-transform.js';
import { activation } from '../../runtime/native/ops.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { truncateIds } from '../../tokenizers/batch.js';
import { loadTokenizer } from '../../tokenizers/load.js';
import { countImageMarkers, replaceImageMarkers } from '../../tokenizers/templates.js';
import type { Tokenizer } from '../../tokenizers/types.js';
import { ModelConfigError } from '../text/config.js';
import { loadTextDecoder, type LoadedTextDecoder } from '../text/load.js';
import { expectedDecoderWeights, Linear } from '../text/modules.js';
import { weightGetter } from '../vision/tower.js';
import { loadVisionTower, type LoadedVisionTower } from '../vision/load.js';
import { checkpointConfigFile, checkWeights, readWeightVariables, WeightMismatchError } from '../weights.js';
import type { LoadMultimodalOptions } from './llava.js';
import { checkVocabulary, forwardWithImageFeatures, padInputs } from './prepare.js';
import type { EmbedForwardOptions, MultimodalModel, PreparedInput, PrepareOptions } from './types.js';

/** Where the image embedding module's tensors are. */
export const PHI3V_EMBED_PREFIX = 'model.vision_embed_tokens.';
export const PHI3V_TOWER_PREFIX = `${PHI3V_EMBED_PREFIX}img_processor.vision_model.`;
/** Phi3VProcessor's marker for image k; one image per input here, so always image 1. */
export const PHI3V_IMAGE_MARKER = '<|image_1|>';
const MARKER_SPLIT = /<\|image_\d+\|>/;

/** A prepared Phi-3.5-V input: pixels are [1 + rows * cols, 3, S, S] (global view, then crops), with the crop grid. */
export interface Phi3VPreparedInput extends PreparedInput {
  readonly crops: { rows: number; cols: number } | null;
}

export interface LoadPhi3VOptions extends LoadMultimodalOptions {
  /** Override preprocessor_config.json's num_crops (UniME and VLM2Vec embed with 4). */
  numCrops?: number;
}

/** The embd_layer / img_processor fields of a phi3_v config that decide the image path. */
export interface Phi3VImageConfig {
  /** hidden_states index of the tower the features come from (img_processor.layer_idx, default -2). */
  layerIdx: number;
  /** img_processor.image_dim_out: the tower width C (the merged features are 4C). */
  imageDimOut: number;
}

/** Validate the image-embedding fields of a phi3_v config.json the way the reference's asserts do, with fixes. */
export function phi3vImageConfig(top: HfConfig, file: string, towerWidth: number, towerGrid: number): Phi3VImageConfig {
  const embd = (top.embd_layer ?? {}) as Record<string, unknown>;
  const img = top.img_processor as Record<string, unknown> | undefined;
  if (typeof img !== 'object' || img === null || Array.isArray(img)) {
    throw new ModelConfigError('is missing: a phi3_v config describes its vision tower there', {
      file,
      field: 'img_processor',
      fix: 'use the config.json of a Phi-3.5-V checkpoint (img_processor: {name: "clip_vision_model", image_dim_out: 1024, num_img_tokens: 144, ...})',
    });
  }
  const want = (field: string, value: unknown, expected: unknown, what: string) => {
    if (value !== expected) {
      throw new ModelConfigError(`must be ${JSON.stringify(expected)}, got ${JSON.stringify(value)}: ${what}`, {
        file,
        field,
        fix: `set ${field} to ${JSON.stringify(expected)} (Phi-3.5-vision-instruct's value)`,
      });
    }
  };
  want('img_processor.name', img.name ?? 'clip_vision_model', 'clip_vision_model', 'only the CLIP tower is implemented');
  want('embd_layer.use_hd_transform', embd.use_hd_transform, true, 'the image path is the HD transform');
  want('embd_layer.with_learnable_separator', embd.with_learnable_separator, true, 'the HD transform uses the glb_GN / sub_GN separators');
  want('embd_layer.hd_transform_order', embd.hd_transform_order ?? 'glb_sub', 'sub_glb', 'the reference implements only crops-then-global');
  want('embd_layer.projection_cls', embd.projection_cls ?? 'linear', 'mlp', 'img_projection is Linear-GELU-Linear on the merged features');
  want('img_processor.type_feature', img.type_feature ?? 'patch', 'patch', "only 'patch' features (class token dropped) are implemented");
  const layerIdx = img.layer_idx ?? -2;
  if (typeof layerIdx !== 'number' || !Number.isInteger(layerIdx)) {
    throw new ModelConfigError(`must be an integer, got ${JSON.stringify(layerIdx)}`, { file, field: 'img_processor.layer_idx', fix: 'use -2 (the default)' });
  }
  const dim = img.image_dim_out;
  if (dim !== towerWidth) {
    throw new ModelConfigError(`is ${JSON.stringify(dim)} but the vision tower's hidden size is ${towerWidth}`, {
      file,
      field: 'img_processor.image_dim_out',
      fix: `set img_processor.image_dim_out to ${towerWidth} (the width of the CLIP tower's features)`,
    });
  }
  if (towerGrid % 2 !== 0) {
    throw new ModelConfigError(`the vision tower's patch grid is ${towerGrid} x ${towerGrid}, which the 2x2 token merge cannot halve`, {
      file,
      field: 'vision_config.image_size',
      fix: 'use an image_size / patch_size ratio that is even (336 / 14 = 24 for Phi-3.5-V)',
    });
  }
  const merged = towerGrid / 2;
  if (img.num_img_tokens !== undefined && img.num_img_tokens !== merged * merged) {
    throw new ModelConfigError(`is ${JSON.stringify(img.num_img_tokens)} but a crop of the vision tower gives ${merged * merged} merged tokens`, {
      file,
      field: 'img_processor.num_img_tokens',
      fix: `set img_processor.num_img_tokens to ${merged * merged} ((grid / 2)^2)`,
    });
  }
  return { layerIdx, imageDimOut: towerWidth };
}

/** Expected tensors of the image embedding module (relative to PHI3V_EMBED_PREFIX), the tower aside. */
export function expectedPhi3VEmbeddingWeights(C: number, hidden: number): Map<string, number[]> {
  return new Map<string, number[]>([
    ['glb_GN', [1, 1, 4 * C]],
    ['sub_GN', [1, 1, 1, 4 * C]],
    ['img_projection.0.weight', [hidden, 4 * C]],
    ['img_projection.0.bias', [hidden]],
    ['img_projection.2.weight', [hidden, hidden]],
    ['img_projection.2.bias', [hidden]],
  ]);
}

/**
 * [n, g*g, C] patch features -> [n, g/2, g/2, 4C]: each 2x2 block of neighbouring patches becomes one
 * token whose channels are the block's four features in (top-left, top-right, bottom-left, bottom-right) order.
 */
export function merge2x2(features: Tensor): Tensor {
  return tf.tidy(() => {
    const [n, L, C] = features.shape as [number, number, number];
    const g = Math.round(Math.sqrt(L));
    const m = g / 2;
    const x = tf.reshape(features, [n * m, 2, m, 2 * C]); // [n*m, row-in-block, m, (col-in-block, C)]
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [n, m, m, 4 * C]);
  });
}

export class Phi3VModel implements MultimodalModel {
  readonly modelType = 'phi3_v';
  readonly imageMarker = PHI3V_IMAGE_MARKER;
  readonly imageSize: number;
  /** Merged tokens per side of one crop (tower grid / 2). */
  readonly mergedSide: number;
  readonly glbGN: tf.Variable;
  readonly subGN: tf.Variable;
  readonly projection0: Linear;
  readonly projection2: Linear;

  constructor(
    readonly dir: string,
    readonly tokenizer: Tokenizer,
    readonly vision: LoadedVisionTower,
    /** glb_GN, sub_GN, img_projection.* by key relative to PHI3V_EMBED_PREFIX. */
    readonly embeddingWeights: ReadonlyMap<string, tf.Variable>,
    readonly decoder: LoadedTextDecoder,
    readonly imageConfig: Phi3VImageConfig,
    readonly processor: HdProcessorConfig,
  ) {
    this.imageSize = vision.config.imageSize;
    this.mergedSide = vision.config.gridSize / 2;
    const get = weightGetter(embeddingWeights, 'phi3_v image embedding');
    this.glbGN = get('glb_GN');
    this.subGN = get('sub_GN');
    this.projection0 = Linear.from(get, 'img_projection.0', true);
    this.projection2 = Linear.from(get, 'img_projection.2', true);
  }

  get dim(): number {
    return this.decoder.config.hiddenSize;
  }

  get visionParameters(): number {
    let n = this.vision.numParameters;
    for (const v of this.embeddingWeights.values()) n += v.size;
    return n;
  }

  /** Image tokens for a crop grid (the processor's num_img_tokens). */
  imageTokens(rows: number, cols: number): number {
    return hdImageTokens(rows, cols, this.mergedSide);
  }

  /**
   * Phi3VProcessor's input ids: the text split at the image marker, each chunk tokenized on its own
   * with the tokenizer's special tokens (so a BOS-adding tokenizer puts BOS before every chunk, as
   * the reference does), the image's positions filled with -1. An input with an image but no marker
   * gets `<|image_1|>\n` in front; markers of other backbones are rewritten.
   *
   * maxLength cuts text-only inputs only: Phi3VProcessor does not truncate inputs with an image (its
   * image tokens alone, 313 to 2,000+ for 336-pixel crops, exceed the max_length recipes use for text).
   */
  prepare(text: string, image: RgbImage | null, options: PrepareOptions = {}): Phi3VPreparedInput {
    const tok = this.tokenizer;
    const markers = countImageMarkers(text);
    if (markers > 1) throw new UnimeError(`an input holds ${markers} image markers; one image per input is supported`, { fix: `keep one image marker (${PHI3V_IMAGE_MARKER}) per text` });
    if (markers === 1 && image === null) {
      throw new UnimeError(`an input's text has an image marker but no image was given: ${JSON.stringify(text.slice(0, 80))}`, { fix: 'give the image, or remove the marker from the text' });
    }
    if (image === null) {
      const ids = tok.encode(text, { addSpecialTokens: true });
      return { ...this.truncate(ids, options.maxLength), pixels: null, crops: null };
    }
    const hd = hdPreprocess(image, this.processor, this.imageSize);
    const n = this.imageTokens(hd.layout.rows, hd.layout.cols);
    const body = markers === 1 ? replaceImageMarkers(text, PHI3V_IMAGE_MARKER) : `${PHI3V_IMAGE_MARKER}\n${text}`;
    const [before, after] = body.split(MARKER_SPLIT) as [string, string];
    const ids = [...tok.encode(before, { addSpecialTokens: true }), ...new Array<number>(n).fill(-1), ...tok.encode(after, { addSpecialTokens: true })];
    return { ids, truncated: false, pixels: hd.data, crops: { rows: hd.layout.rows, cols: hd.layout.cols } };
  }

  private truncate(ids: number[], max: number | undefined): { ids: number[]; truncated: boolean } {
    if (max === undefined || ids.length <= max) return { ids, truncated: false };
    const tok = this.tokenizer;
    const bos = tok.addBosToken && tok.specialIds.bos !== undefined && ids[0] === tok.specialIds.bos ? 1 : 0;
    const eos = tok.addEosToken && tok.specialIds.eos !== undefined && ids[ids.length - 1] === tok.specialIds.eos ? 1 : 0;
    return { ids: truncateIds(ids, max, { keepFirst: bos, keepLast: eos }), truncated: true };
  }

  /**
   * Projected image features of prepared images, packed in order: [sum of image tokens, hidden].
   * All views of all images go through the tower as one batch.
   */
  imageFeatures(images: readonly Phi3VPreparedInput[]): Tensor {
    const S = this.imageSize;
    const view = 3 * S * S;
    const grids = images.map((x) => {
      if (!x.crops || !x.pixels) throw new UnimeError('imageFeatures needs inputs prepared with an image by this model');
      if (x.pixels.length !== (1 + x.crops.rows * x.crops.cols) * view) {
        throw new UnimeError(`prepared pixels hold ${x.pixels.length / view} views, the crop grid ${x.crops.rows}x${x.crops.cols} needs ${1 + x.crops.rows * x.crops.cols}`, {
          fix: 'prepare inputs with this model (prepare())',
        });
      }
      return x.crops;
    });
    const views = grids.reduce((s, g) => s + 1 + g.rows * g.cols, 0);
    const px = new Float32Array(views * view);
    let off = 0;
    for (const x of images) {
      px.set(x.pixels!, off);
      off += x.pixels!.length;
    }
    return tf.tidy(() => {
      const m = this.mergedSide;
      const C4 = 4 * this.imageConfig.imageDimOut;
      const feats = this.vision.selectFeatures(tf.tensor4d(px, [views, 3, S, S]), { layer: this.imageConfig.layerIdx, strategy: 'default' });
      const merged = merge2x2(feats); // [views, m, m, 4C]
      const glb = tf.reshape(this.glbGN, [1, C4]);
      const withNewlines = (grid: Tensor): Tensor => {
        const [h] = grid.shape as [number, number, number];
        return tf.reshape(tf.concat([grid, tf.broadcastTo(tf.reshape(this.subGN, [1, 1, C4]), [h, 1, C4])], 1), [-1, C4]);
      };
      const parts: Tensor[] = [];
      let v = 0;
      for (const { rows, cols } of grids) {
        const global = tf.reshape(tf.slice(merged, [v, 0, 0, 0], [1, m, m, C4]), [m, m, C4]);
        const crops = tf.slice(merged, [v + 1, 0, 0, 0], [rows * cols, m, m, C4]);
        // [rows, cols, m, m, 4C] -> [rows, m, cols, m, 4C]: one (rows*m) x (cols*m) grid of merged tokens
        const grid = tf.reshape(tf.transpose(tf.reshape(crops, [rows, cols, m, m * C4]), [0, 2, 1, 3]), [rows * m, cols * m, C4]);
        parts.push(withNewlines(grid), glb, withNewlines(global));
        v += 1 + rows * cols;
      }
      const all = tf.concat(parts, 0);
      return this.projection2.forward(activation('geluErf', this.projection0.forward(all)));
    });
  }

  embed(batch: readonly PreparedInput[], options: EmbedForwardOptions = {}): Tensor {
    const enc = padInputs(
      batch.map((b) => b.ids),
      this.tokenizer,
    );
    const { batchSize: b, seqLen: seq } = enc;
    const ids = enc.inputIds;
    // Negative ids are image positions (Phi3VProcessor's -k); they read row 0 and are replaced below,
    // in flat order, by the packed features of the batch's images in order.
    const imagePositions: number[] = [];
    for (let p = 0; p < ids.length; p++) {
      if (ids[p]! < 0 && enc.attentionMask[p] === 1) {
        imagePositions.push(p);
        ids[p] = 0;
      }
    }
    checkVocabulary(ids, this.decoder.config.vocabSize, this.dir);
    const images = batch.filter((x) => x.pixels !== null) as Phi3VPreparedInput[];
    const expected = images.reduce((s, x) => s + (x.crops ? this.imageTokens(x.crops.rows, x.crops.cols) : 0), 0);
    if (imagePositions.length !== expected || images.some((x) => !x.crops)) {
      throw new UnimeError(`the batch has ${imagePositions.length} image positions for ${images.length} image(s) needing ${expected}`, {
        fix: 'prepare inputs with this model (prepare()) so placeholders match images',
      });
    }
    return forwardWithImageFeatures(this.decoder, enc, imagePositions, images.length > 0 ? () => this.imageFeatures(images) : null, options);
  }

  dispose(): void {
    this.vision.dispose();
    for (const v of this.embeddingWeights.values()) v.dispose();
    this.decoder.dispose();
  }
}

/** Tensors a Phi-3.5-V checkpoint may hold that nothing reads. */
const TOLERATED = /^(lm_head\.weight|model\.vision_embed_tokens\.wte\.weight|.*\.position_ids|.*rotary_emb\.inv_freq)$/;

export async function loadPhi3V(dir: string, options: LoadPhi3VOptions = {}): Promise<Phi3VModel> {
  const trainable = options.trainable ?? false;
  const configFile = await checkpointConfigFile(dir);
  const top = await readHfConfig(configFile);
  const processor = await readHdProcessorConfig(dir);
  if (options.numCrops !== undefined) processor.numCrops = options.numCrops;
  const tokenizer = await loadTokenizer(dir);
  const vision = await loadVisionTower(dir, { prefix: PHI3V_TOWER_PREFIX, configFile, config: top, trainable });
  let decoder: LoadedTextDecoder | undefined;
  let embeddingWeights = new Map<string, tf.Variable>();
  try {
    const imageConfig = phi3vImageConfig(top, configFile, vision.config.hiddenSize, vision.config.gridSize);
    // The decoder's fields sit at the top level of a phi3_v config, as in a phi3 one.
    decoder = await loadTextDecoder(dir, { config: { ...top, model_type: 'phi3' }, configFile, prefix: 'model.', strict: false, trainable });
    const ckpt = await openCheckpoint(dir);
    try {
      const expected = expectedPhi3VEmbeddingWeights(imageConfig.imageDimOut, decoder.config.hiddenSize);
      checkWeights(ckpt, PHI3V_EMBED_PREFIX, expected, { what: 'the phi3_v image embedding', configFile, prefixLabel: 'image embedding', strict: false, tolerated: () => false });
      // Every tensor must belong to the decoder, the tower or the image embedding.
      const decoderKeys = new Set([...expectedDecoderWeights(decoder.config).keys()].map((k) => `model.${k}`));
      const towerKeys = new Set([...vision.weights.keys()].map((k) => PHI3V_TOWER_PREFIX + k));
      const unexpected = ckpt.names.filter(
        (n) => !decoderKeys.has(n) && !towerKeys.has(n) && !(n.startsWith(PHI3V_EMBED_PREFIX) && expected.has(n.slice(PHI3V_EMBED_PREFIX.length))) && !TOLERATED.test(n),
      );
      if (unexpected.length > 0) {
        throw new WeightMismatchError(`${unexpected.length} tensor(s) belong to no part of a phi3_v model: ${unexpected.slice(0, 8).join(', ')}`, {
          file: ckpt.indexPath ?? ckpt.files[0] ?? ckpt.path,
          field: unexpected[0],
          fix: 'check that config.json belongs to these weights (a Phi-3.5-V checkpoint: model.*, model.vision_embed_tokens.*, lm_head.weight)',
        });
      }
      embeddingWeights = await readWeightVariables(ckpt, PHI3V_EMBED_PREFIX, expected, trainable);
    } finally {
      await ckpt.close();
    }
    return new Phi3VModel(dir, tokenizer, vision, embeddingWeights, decoder, imageConfig, processor);
  } catch (e) {
    vision.dispose();
    decoder?.dispose();
    for (const v of embeddingWeights.values()) v.dispose();
    throw e;
  }
}
