/**
 * LLaVA (transformers' LlavaForConditionalGeneration, model_type "llava"): a CLIP or SigLIP vision
 * tower, LLaVA's feature selection (vision_feature_layer, vision_feature_select_strategy), the
 * multi_modal_projector, and a text decoder whose input embeddings get the projected image features
 * at the image-token positions (in order), as transformers' masked_scatter does.
 */
import { UnimeError } from '../../errors.js';
import { readHfConfig, type HfConfig } from '../../io/hf-config.js';
import { openCheckpoint } from '../../io/checkpoint.js';
import type { RgbImage } from '../../images/decode.js';
import { preprocessImage, readImageProcessorConfig, type ImageProcessorConfig } from '../../images/processor.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import type { Tokenizer } from '../../tokenizers/types.js';
import { loadTokenizer } from '../../tokenizers/load.js';
import { loadTextDecoder, type LoadedTextDecoder } from '../text/load.js';
import { ModelConfigError } from '../text/config.js';
import { featureSelectionFromConfig, HF_ACTIVATIONS, type FeatureSelection } from '../vision/config.js';
import { loadVisionTower, type LoadedVisionTower } from '../vision/load.js';
import { checkpointConfigFile, checkWeights, readWeightVariables, WeightMismatchError } from '../weights.js';
import { expectedProjectorWeights, MultiModalProjector } from './projector.js';
import { checkVocabulary, forwardWithImageFeatures, padInputs, tokenizeWithImage } from './prepare.js';
import type { EmbedForwardOptions, MultimodalModel, PreparedInput, PrepareOptions } from './types.js';

/** Where the projector's tensors are in the two checkpoint layouts transformers has used. */
export const PROJECTOR_PREFIXES = ['model.multi_modal_projector.', 'multi_modal_projector.'];

/** transformers' default image token of LLaVA-1.5 checkpoints. */
const DEFAULT_IMAGE_TOKEN_INDEX = 32000;

export interface LoadMultimodalOptions {
  /** Variables of the frozen base model are created non-trainable (default false: frozen). */
  trainable?: boolean;
}

export function imageTokenIdFromConfig(top: HfConfig, file: string): number {
  const v = top.image_token_index ?? (top.image_token_id as unknown) ?? DEFAULT_IMAGE_TOKEN_INDEX;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new ModelConfigError(`must be a non-negative integer, got ${JSON.stringify(v)}`, { file, field: 'image_token_index' });
  }
  return v;
}

/** What every LLaVA-family assembly is made of: tower, feature selection, projector, decoder, image token. */
export interface LlavaParts {
  dir: string;
  tokenizer: Tokenizer;
  vision: LoadedVisionTower;
  projector: MultiModalProjector;
  projectorWeights: ReadonlyMap<string, tf.Variable>;
  decoder: LoadedTextDecoder;
  selection: FeatureSelection;
  imageTokenId: number;
  /** The tokenizer's text for imageTokenId ('<image>'). */
  imageMarker: string;
}

/**
 * The forward pass the LLaVA family shares: the decoder's input embeddings with each image's
 * features written over its image-token positions (in order, as transformers' masked_scatter), then
 * the decoder and pooling. Subclasses say how many tokens an image stands for and compute those
 * features: a fixed grid for LLaVA-1.5, anyres tiles packed per image for LLaVA-NeXT / OneVision.
 */
export abstract class LlavaFamilyModel implements MultimodalModel {
  abstract readonly modelType: string;
  readonly dir: string;
  readonly tokenizer: Tokenizer;
  readonly vision: LoadedVisionTower;
  readonly projector: MultiModalProjector;
  readonly projectorWeights: ReadonlyMap<string, tf.Variable>;
  readonly decoder: LoadedTextDecoder;
  readonly selection: FeatureSelection;
  readonly imageTokenId: number;
  readonly imageMarker: string;
  /** Side of the square tile the vision tower takes. */
  readonly imageSize: number;

  constructor(parts: LlavaParts) {
    this.dir = parts.dir;
    this.tokenizer = parts.tokenizer;
    this.vision = parts.vision;
    this.projector = parts.projector;
    this.projectorWeights = parts.projectorWeights;
    this.decoder = parts.decoder;
    this.selection = parts.selection;
    this.imageTokenId = parts.imageTokenId;
    this.imageMarker = parts.imageMarker;
    this.imageSize = parts.vision.config.imageSize;
  }

  get dim(): number {
    return this.decoder.config.hiddenSize;
  }

  get visionParameters(): number {
    let n = this.vision.numParameters;
    for (const v of this.projectorWeights.values()) n += v.size;
    return n;
  }

  abstract prepare(text: string, image: RgbImage | null, options?: PrepareOptions): PreparedInput;

  /** How many image-token positions the image of a prepared input (pixels not null) fills. */
  abstract imageTokenCount(input: PreparedInput): number;

  /** The features of the images of prepared inputs, in order: [sum of imageTokenCount, hidden]. Differentiable. */
  abstract imageTokenFeatures(images: readonly PreparedInput[]): Tensor;

  /** Projected features [tiles, tokens per tile, hidden] of preprocessed tiles [tiles, 3, S, S]. */
  protected projectTiles(pixels: Tensor): Tensor {
    return tf.tidy(() => this.projector.forward(this.vision.selectFeatures(pixels, this.selection)));
  }

  embed(batch: readonly PreparedInput[], options: EmbedForwardOptions = {}): Tensor {
    const enc = padInputs(
      batch.map((b) => b.ids),
      this.tokenizer,
    );
    const { batchSize: b, seqLen: seq } = enc;
    const ids = enc.inputIds;
    // Image positions in flat [b * seq] order: row by row, so the k-th image's tokens are the k-th block.
    // They read id 0 from the embedding table; the image features replace those rows below.
    const imagePositions: number[] = [];
    for (let r = 0; r < b; r++) {
      let found = 0;
      for (let p = r * seq; p < (r + 1) * seq; p++) {
        if (ids[p] === this.imageTokenId && enc.attentionMask[p] === 1) {
          imagePositions.push(p);
          ids[p] = 0;
          found++;
        }
      }
      const want = batch[r]!.pixels === null ? 0 : this.imageTokenCount(batch[r]!);
      if (found !== want) {
        throw new UnimeError(`input ${r} has ${found} image-token positions for ${batch[r]!.pixels === null ? 'no image' : `an image of ${want} tokens`}`, {
          fix: 'prepare inputs with this model (prepare()) so placeholders match images',
        });
      }
    }
    checkVocabulary(ids, this.decoder.config.vocabSize, this.dir);
    const images = batch.filter((x) => x.pixels !== null);
    return forwardWithImageFeatures(this.decoder, enc, imagePositions, images.length > 0 ? () => this.imageTokenFeatures(images) : null, options);
  }

  dispose(): void {
    this.vision.dispose();
    for (const v of this.projectorWeights.values()) v.dispose();
    this.decoder.dispose();
  }
}

export class LlavaModel extends LlavaFamilyModel {
  readonly modelType = 'llava';
  /** Image tokens per image. */
  readonly imageTokens: number;

  constructor(
    parts: LlavaParts,
    readonly processor: ImageProcessorConfig,
  ) {
    super(parts);
    const grid = parts.vision.config.gridSize;
    this.imageTokens = grid * grid + (parts.selection.strategy === 'full' && parts.vision.config.classToken ? 1 : 0);
  }

  prepare(text: string, image: RgbImage | null, options: PrepareOptions = {}): PreparedInput {
    const { ids, truncated } = tokenizeWithImage(this.tokenizer, text, { marker: this.imageMarker, markerId: this.imageTokenId, imageTokens: this.imageTokens }, {
      maxLength: options.maxLength,
      hasImage: image !== null,
    });
    let pixels: Float32Array | null = null;
    if (image !== null) {
      const p = preprocessImage(image, this.processor);
      if (p.height !== this.imageSize || p.width !== this.imageSize) {
        throw new UnimeError(`the image processor makes ${p.height}x${p.width} images but the vision tower takes ${this.imageSize}x${this.imageSize}`, {
          file: this.dir,
          fix: 'make preprocessor_config.json crop/resize to the vision tower image_size',
        });
      }
      pixels = p.data;
    }
    return { ids, pixels, truncated };
  }

  /** Projected image features [images, imageTokens, hidden] of preprocessed pixels [images, 3, S, S]. */
  imageFeatures(pixels: Tensor): Tensor {
    return this.projectTiles(pixels);
  }

  imageTokenCount(): number {
    return this.imageTokens;
  }

  imageTokenFeatures(images: readonly PreparedInput[]): Tensor {
    const S = this.imageSize;
    const px = new Float32Array(images.length * 3 * S * S);
    images.forEach((x, i) => {
      if (x.pixels!.length !== 3 * S * S) throw new UnimeError(`an image has ${x.pixels!.length} pixel values, the vision tower takes 3x${S}x${S}`, { fix: 'prepare inputs with this model (prepare())' });
      px.set(x.pixels!, i * 3 * S * S);
    });
    return tf.tidy(() => tf.reshape(this.imageFeatures(tf.tensor4d(px, [images.length, 3, S, S])), [images.length * this.imageTokens, this.dim]));
  }
}

async function loadProjector(dir: string, top: HfConfig, configFile: string, visionDim: number, textDim: number, trainable: boolean, hfClass: string) {
  const ckpt = await openCheckpoint(dir);
  try {
    const prefix = PROJECTOR_PREFIXES.find((p) => ckpt.has(`${p}linear_1.weight`));
    if (prefix === undefined) {
      throw new WeightMismatchError(`no multi_modal_projector found (looked for ${PROJECTOR_PREFIXES.map((p) => `${p}linear_1.weight`).join(', ')})`, {
        file: ckpt.indexPath ?? ckpt.files[0] ?? ckpt.path,
        fix: `point at a ${hfClass} checkpoint`,
      });
    }
    const bias = (top.multimodal_projector_bias as boolean | undefined) ?? true;
    const expected = expectedProjectorWeights(visionDim, textDim, bias);
    checkWeights(ckpt, prefix, expected, { what: 'the LLaVA projector', configFile, prefixLabel: 'projector', strict: true, tolerated: () => false });
    const weights = await readWeightVariables(ckpt, prefix, expected, trainable);
    const actName = (top.projector_hidden_act as string | undefined) ?? 'gelu';
    const act = HF_ACTIVATIONS[actName];
    if (!act) {
      for (const v of weights.values()) v.dispose();
      throw new ModelConfigError(`activation ${JSON.stringify(actName)} is not supported`, { file: configFile, field: 'projector_hidden_act', fix: `use one of ${Object.keys(HF_ACTIVATIONS).join(', ')}` });
    }
    const get = (name: string) => weights.get(name)!;
    return { projector: new MultiModalProjector(get, '', act, bias), weights };
  } finally {
    await ckpt.close();
  }
}

/** What a LLaVA-family loader knows before any weight is read, for its own checks. */
export interface LlavaConfigContext {
  top: HfConfig;
  configFile: string;
  selection: FeatureSelection;
  tokenizer: Tokenizer;
  trainable: boolean;
}

/**
 * Load the parts every LLaVA-family checkpoint has (config, tokenizer with its image token, vision
 * tower, decoder, projector). `configure` runs before any weight is read (config and processor
 * checks fail fast on a 7B checkpoint); `build` makes the model from the parts. Whatever was loaded
 * is disposed when a step throws.
 */
export async function loadLlavaFamily<C, M extends LlavaFamilyModel>(
  dir: string,
  options: LoadMultimodalOptions,
  hfClass: string,
  configure: (ctx: LlavaConfigContext) => Promise<C>,
  build: (parts: LlavaParts, configured: C, ctx: LlavaConfigContext) => Promise<M>,
): Promise<M> {
  const trainable = options.trainable ?? false;
  const configFile = await checkpointConfigFile(dir);
  const top = await readHfConfig(configFile);
  const selection = featureSelectionFromConfig(top, configFile);
  const imageTokenId = imageTokenIdFromConfig(top, configFile);
  const tokenizer = await loadTokenizer(dir);
  const marker = tokenizer.idToToken(imageTokenId);
  if (marker === undefined) {
    throw new ModelConfigError(`image token id ${imageTokenId} is not in the tokenizer`, { file: configFile, field: 'image_token_index', fix: "set it to the id of the tokenizer's <image> token" });
  }
  const ctx: LlavaConfigContext = { top, configFile, selection, tokenizer, trainable };
  const configured = await configure(ctx);
  const vision = await loadVisionTower(dir, { trainable });
  let decoder: LoadedTextDecoder | undefined;
  let projectorWeights: Map<string, tf.Variable> | undefined;
  try {
    decoder = await loadTextDecoder(dir, { trainable });
    const layers = Array.isArray(selection.layer) ? selection.layer.length : 1;
    const { projector, weights } = await loadProjector(dir, top, configFile, vision.config.hiddenSize * layers, decoder.config.hiddenSize, trainable, hfClass);
    projectorWeights = weights;
    const parts: LlavaParts = { dir, tokenizer, vision, projector, projectorWeights: weights, decoder, selection, imageTokenId, imageMarker: marker };
    return await build(parts, configured, ctx);
  } catch (e) {
    vision.dispose();
    decoder?.dispose();
    for (const v of projectorWeights?.values() ?? []) v.dispose();
    throw e;
  }
}

export async function loadLlava(dir: string, options: LoadMultimodalOptions = {}): Promise<LlavaModel> {
  return loadLlavaFamily(
    dir,
    options,
    'LlavaForConditionalGeneration',
    () => readImageProcessorConfig(dir),
    async (parts, processor) => new LlavaModel(parts, processor),
  );
}
