/**
 * LLaVA-NeXT (transformers' LlavaNextForConditionalGeneration, model_type "llava_next") and
 * LLaVA-OneVision (LlavaOnevisionForConditionalGeneration, "llava_onevision"): LLaVA with anyres
 * images. One image becomes a base tile plus the tiles of its best grid pinpoint
 * (src/images/anyres.ts); every tile goes through the tower and the projector; the tiles' features are
 * stitched, unpadded, shrunk (OneVision's anyres_max_N) and given an image_newline per row
 * (src/models/mllm/anyres-layout.ts); and `<image>` expands to exactly that many tokens, which depends
 * on the image's size. The forward pass is the LLaVA family's (LlavaFamilyModel).
 */
import { UnimeError } from '../../errors.js';
import type { HfConfig } from '../../io/hf-config.js';
import { openCheckpoint } from '../../io/checkpoint.js';
import {
  anyresNumPatches,
  anyresPixelArray,
  LLAVA_NEXT_PINPOINTS,
  LLAVA_ONEVISION_PINPOINTS,
  numberOfImageTokens,
  parseVisionAspectRatio,
  readAnyresProcessorConfig,
  type AnyresProcessorConfig,
  type AnyresTokenConfig,
  type AnyresVariant,
  type Pinpoint,
} from '../../images/anyres.js';
import type { RgbImage } from '../../images/decode.js';
import { PREPROCESSOR_CONFIG } from '../../images/processor.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { ModelConfigError } from '../text/config.js';
import type { VisionConfig } from '../vision/config.js';
import { selectVisionConfig } from '../vision/load.js';
import { checkWeights, readWeightVariables, WeightMismatchError } from '../weights.js';
import { packImageFeatures } from './anyres-layout.js';
import { loadLlavaFamily, LlavaFamilyModel, type LlavaConfigContext, type LlavaParts, type LoadMultimodalOptions } from './llava.js';
import { tokenizeWithImage } from './prepare.js';
import type { PreparedInput, PrepareOptions } from './types.js';

/** Where image_newline is in the two checkpoint layouts transformers has used. */
export const IMAGE_NEWLINE_KEYS = ['model.image_newline', 'image_newline'];

const HF_CLASS: Record<AnyresVariant, string> = {
  llava_next: 'LlavaNextForConditionalGeneration',
  llava_onevision: 'LlavaOnevisionForConditionalGeneration',
};
const PROCESSOR_CLASS: Record<AnyresVariant, string> = {
  llava_next: 'LlavaNextImageProcessor',
  llava_onevision: 'LlavaOnevisionImageProcessor',
};

/** A prepared input of an anyres model: the pixels are all tiles of the image, base first. */
export interface AnyresPreparedInput extends PreparedInput {
  /** The image's original [height, width] (transformers' image_sizes): the grid and unpadding depend on it. null: text only. */
  readonly originalSize: readonly [number, number] | null;
}

/** What the anyres side of a LLaVA-NeXT / OneVision config.json says, checked. */
export interface AnyresModelConfig {
  variant: AnyresVariant;
  /** config.json's image_grid_pinpoints ([height, width] pairs). */
  pinpoints: Pinpoint[];
  /** OneVision's N of vision_aspect_ratio "anyres_max_N" (null for LLaVA-NeXT). */
  maxNumPatches: number | null;
}

export class LlavaNextModel extends LlavaFamilyModel {
  readonly modelType: AnyresVariant;
  /** How prepare() counts an image's tokens (the processors' _get_number_of_features). */
  readonly tokenConfig: AnyresTokenConfig;

  constructor(
    parts: LlavaParts,
    readonly anyres: AnyresModelConfig,
    readonly processor: AnyresProcessorConfig,
    /** The learned vector after every row of the packed grid, [hidden]. */
    readonly imageNewline: tf.Variable,
  ) {
    super(parts);
    this.modelType = anyres.variant;
    const v = parts.vision.config;
    this.tokenConfig = {
      variant: anyres.variant,
      pinpoints: anyres.pinpoints,
      tileSize: v.imageSize,
      patchSize: v.patchSize,
      visionFeatureSelectStrategy: parts.selection.strategy,
      // the processor counts the CLS feature in the base and 'default' takes it away again
      numAdditionalImageTokens: v.classToken ? 1 : 0,
      maxNumPatches: anyres.maxNumPatches ?? undefined,
    };
  }

  override get visionParameters(): number {
    return super.visionParameters + this.imageNewline.size;
  }

  /** Image tokens `<image>` expands to for an image of the given original size. */
  imageTokensFor(height: number, width: number): number {
    const n = numberOfImageTokens(height, width, this.tokenConfig);
    // OneVision's processor takes the base from num_image_tokens, which counts a CLIP tower's class
    // token (577 for 336/14) before 'default' subtracts it; numberOfImageTokens assumes SigLIP (none).
    return this.anyres.variant === 'llava_onevision' && this.vision.config.classToken ? n + 1 : n;
  }

  prepare(text: string, image: RgbImage | null, options: PrepareOptions = {}): AnyresPreparedInput {
    const imageTokens = image === null ? 0 : this.imageTokensFor(image.height, image.width);
    const { ids, truncated } = tokenizeWithImage(this.tokenizer, text, { marker: this.imageMarker, markerId: this.imageTokenId, imageTokens }, {
      maxLength: options.maxLength,
      hasImage: image !== null,
    });
    if (image === null) return { ids, pixels: null, truncated, originalSize: null };
    const p = anyresPixelArray(image, this.processor);
    if (p.height !== this.imageSize || p.width !== this.imageSize) {
      throw new UnimeError(`the image processor makes ${p.height}x${p.width} tiles but the vision tower takes ${this.imageSize}x${this.imageSize}`, {
        file: this.dir,
        fix: `make ${PREPROCESSOR_CONFIG} crop/resize to the vision tower image_size`,
      });
    }
    return { ids, pixels: p.data, truncated, originalSize: [image.height, image.width] };
  }

  imageTokenCount(input: PreparedInput): number {
    const [h, w] = originalSizeOf(input);
    return this.imageTokensFor(h, w);
  }

  imageTokenFeatures(images: readonly PreparedInput[]): Tensor {
    const S = this.imageSize;
    const tile = 3 * S * S;
    const counts = images.map((x) => {
      const [h, w] = originalSizeOf(x);
      const n = anyresNumPatches(h, w, this.anyres.pinpoints, S);
      if (x.pixels!.length !== n * tile) {
        throw new UnimeError(`a ${h}x${w} image has ${x.pixels!.length / tile} tiles of 3x${S}x${S} pixel values; this model expects ${n} (base + grid)`, {
          fix: 'prepare inputs with this model (prepare())',
        });
      }
      return n;
    });
    const total = counts.reduce((a, b) => a + b, 0);
    const px = new Float32Array(total * tile);
    let off = 0;
    images.forEach((x) => {
      px.set(x.pixels!, off);
      off += x.pixels!.length;
    });
    return tf.tidy(() => {
      // All tiles of all images in one tower pass: [tiles, n, hidden].
      const feats = this.projectTiles(tf.tensor4d(px, [total, 3, S, S]));
      const [, n, H] = feats.shape as [number, number, number];
      const packed: Tensor[] = [];
      let first = 0;
      images.forEach((x, i) => {
        const base = tf.reshape(tf.slice(feats, [first, 0, 0], [1, n, H]), [n, H]);
        const tiles = tf.slice(feats, [first + 1, 0, 0], [counts[i]! - 1, n, H]);
        const out = packImageFeatures(base, tiles, this.imageNewline, originalSizeOf(x), {
          variant: this.anyres.variant,
          pinpoints: this.anyres.pinpoints,
          imageSize: S,
          maxNumPatches: this.anyres.maxNumPatches ?? undefined,
        });
        const want = this.imageTokenCount(x);
        if (out.shape[0] !== want) {
          // numberOfImageTokens and packImageFeatures are tested to agree; this guards a config neither test saw
          throw new UnimeError(`the packed features of a ${originalSizeOf(x).join('x')} image are ${out.shape[0]} tokens, the processor counts ${want}`, {
            file: this.dir,
            fix: 'check vision_feature_select_strategy and image_grid_pinpoints against the model card',
          });
        }
        packed.push(out);
        first += counts[i]!;
      });
      return packed.length === 1 ? packed[0]! : tf.concat(packed, 0);
    });
  }

  override dispose(): void {
    super.dispose();
    this.imageNewline.dispose();
  }
}

function originalSizeOf(input: PreparedInput): readonly [number, number] {
  const s = (input as Partial<AnyresPreparedInput>).originalSize;
  if (!Array.isArray(s) || s.length !== 2) {
    throw new UnimeError('an image input carries no original image size (anyres models need it for the tile grid)', {
      fix: 'prepare inputs with this model (prepare()); keep originalSize when copying a prepared input',
    });
  }
  return s as readonly [number, number];
}

/**
 * The anyres fields of config.json: image_grid_pinpoints (transformers' defaults per variant),
 * each a multiple of the tower's image_size; OneVision's vision_aspect_ratio.
 */
export function anyresModelConfig(top: HfConfig, variant: AnyresVariant, vision: VisionConfig, file: string): AnyresModelConfig {
  const S = vision.imageSize;
  const raw = top.image_grid_pinpoints ?? (variant === 'llava_next' ? LLAVA_NEXT_PINPOINTS : LLAVA_ONEVISION_PINPOINTS);
  const posInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;
  if (!Array.isArray(raw) || raw.length === 0 || !raw.every((p) => Array.isArray(p) && p.length === 2 && posInt(p[0]) && posInt(p[1]))) {
    throw new ModelConfigError(`must be a non-empty list of [height, width] pairs of positive integers, got ${JSON.stringify(raw)}`, {
      file,
      field: 'image_grid_pinpoints',
      fix: 'copy image_grid_pinpoints from the model card on the Hub',
    });
  }
  const pinpoints = (raw as number[][]).map((p) => [p[0]!, p[1]!] as const);
  const off = pinpoints.find(([h, w]) => h % S !== 0 || w % S !== 0);
  if (off) {
    throw new ModelConfigError(`pinpoint [${off.join(', ')}] is not a multiple of the vision tower's image_size ${S}`, {
      file,
      field: 'image_grid_pinpoints',
      fix: `use [height, width] pairs that are multiples of ${S} (vision_config.image_size)`,
    });
  }
  let maxNumPatches: number | null = null;
  if (variant === 'llava_onevision') {
    const ratio = top.vision_aspect_ratio ?? 'anyres_max_9';
    try {
      if (typeof ratio !== 'string') throw new UnimeError('not a string');
      maxNumPatches = parseVisionAspectRatio(ratio);
    } catch {
      throw new ModelConfigError(`must be "anyres_max_N" with N >= 1, got ${JSON.stringify(ratio)}`, {
        file,
        field: 'vision_aspect_ratio',
        fix: 'use "anyres_max_9" (the released OneVision checkpoints) or another "anyres_max_N"',
      });
    }
  }
  return { variant, pinpoints, maxNumPatches };
}

/**
 * The checks a checkpoint must pass before its weights are read: the anyres config, a feature
 * selection that leaves a square grid per tile, and a preprocessor of the same variant that tiles
 * with the same pinpoints into tiles the tower takes.
 */
async function configureAnyres(dir: string, variant: AnyresVariant, ctx: LlavaConfigContext): Promise<{ anyres: AnyresModelConfig; processor: AnyresProcessorConfig }> {
  const { top, configFile, selection } = ctx;
  const { entry, cfg, fieldPrefix } = selectVisionConfig(top, configFile);
  const vision = entry.buildConfig(cfg, { file: configFile, fieldPrefix });
  const anyres = anyresModelConfig(top, variant, vision, configFile);
  // pack_image_features needs side x side features per tile: 'default' drops CLIP's class token, SigLIP has none.
  if ((selection.strategy === 'default') !== vision.classToken) {
    throw new ModelConfigError(
      `is ${JSON.stringify(selection.strategy)}, but the ${vision.modelType} tower ${vision.classToken ? 'has' : 'has no'} class token, so a tile's features would not form a square grid`,
      {
        file: configFile,
        field: 'vision_feature_select_strategy',
        fix: vision.classToken ? 'use "default" with a CLIP tower (drops the class token)' : 'use "full" with a SigLIP tower',
      },
    );
  }
  const processor = await readAnyresProcessorConfig(dir);
  const ppFile = `${dir}/${PREPROCESSOR_CONFIG}`;
  if (processor.variant !== variant) {
    throw new ModelConfigError(`is ${PROCESSOR_CLASS[processor.variant]}, but config.json's model_type is ${variant}`, {
      file: ppFile,
      field: 'image_processor_type',
      fix: `use ${PROCESSOR_CLASS[variant]} (its token counts and tiles follow ${variant})`,
    });
  }
  const same = processor.pinpoints.length === anyres.pinpoints.length && processor.pinpoints.every((p, i) => p[0] === anyres.pinpoints[i]![0] && p[1] === anyres.pinpoints[i]![1]);
  if (!same) {
    throw new ModelConfigError(`differ from config.json's (${JSON.stringify(anyres.pinpoints)}): the processor would tile for another grid than the model packs`, {
      file: ppFile,
      field: 'image_grid_pinpoints',
      fix: `make image_grid_pinpoints the same in ${PREPROCESSOR_CONFIG} and config.json`,
    });
  }
  const S = vision.imageSize;
  if (processor.tileSize !== S || processor.baseSize[0] !== S || processor.baseSize[1] !== S) {
    throw new ModelConfigError(`makes ${processor.tileSize}-pixel tiles and a ${processor.baseSize.join('x')} base, but the vision tower takes ${S}x${S}`, {
      file: ppFile,
      field: variant === 'llava_next' ? 'crop_size' : 'size',
      fix: variant === 'llava_next' ? `set size {"shortest_edge": ${S}} and crop_size {"height": ${S}, "width": ${S}}` : `set size {"height": ${S}, "width": ${S}}`,
    });
  }
  return { anyres, processor };
}

async function loadImageNewline(dir: string, hidden: number, trainable: boolean, variant: AnyresVariant, configFile: string): Promise<tf.Variable> {
  const ckpt = await openCheckpoint(dir);
  try {
    const key = IMAGE_NEWLINE_KEYS.find((k) => ckpt.has(k));
    if (key === undefined) {
      throw new WeightMismatchError(`no image_newline found (looked for ${IMAGE_NEWLINE_KEYS.join(', ')})`, {
        file: ckpt.indexPath ?? ckpt.files[0] ?? ckpt.path,
        fix: `point at a ${HF_CLASS[variant]} checkpoint`,
      });
    }
    const prefix = key.slice(0, key.length - 'image_newline'.length);
    const expected = new Map([['image_newline', [hidden]]]);
    checkWeights(ckpt, prefix, expected, { what: `the ${variant} image_newline`, configFile, prefixLabel: 'image_newline', strict: false, tolerated: () => true });
    const weights = await readWeightVariables(ckpt, prefix, expected, trainable);
    return weights.get('image_newline')!;
  } finally {
    await ckpt.close();
  }
}

async function loadAnyres(dir: string, variant: AnyresVariant, options: LoadMultimodalOptions): Promise<LlavaNextModel> {
  return loadLlavaFamily(
    dir,
    options,
    HF_CLASS[variant],
    (ctx) => configureAnyres(dir, variant, ctx),
    async (parts, { anyres, processor }, ctx) => {
      const newline = await loadImageNewline(dir, parts.decoder.config.hiddenSize, ctx.trainable, variant, ctx.configFile);
      return new LlavaNextModel(parts, anyres, processor, newline);
    },
  );
}

/** A LLaVA-NeXT checkpoint (model_type "llava_next"). */
export function loadLlavaNext(dir: string, options: LoadMultimodalOptions = {}): Promise<LlavaNextModel> {
  return loadAnyres(dir, 'llava_next', options);
}

/** A LLaVA-OneVision checkpoint (model_type "llava_onevision"). */
export function loadLlavaOnevision(dir: string, options: LoadMultimodalOptions = {}): Promise<LlavaNextModel> {
  return loadAnyres(dir, 'llava_onevision', options);
}
