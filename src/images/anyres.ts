/**
 * The image side of LLaVA-NeXT ("anyres") and LLaVA-OneVision ("anyres_max_N") as transformers'
 * slow image processors and processors compute it (image_processing_llava_next.py,
 * image_processing_llava_onevision.py, processing_llava_next.py, processing_llava_onevision.py):
 *
 * 1. pick the grid pinpoint [height, width] that keeps the most of the image and wastes the least
 *    (`selectBestResolution`),
 * 2. resize the image into it keeping its aspect ratio (Pillow, the processor's resample), paste it
 *    centred on a black canvas of exactly that size, cut the canvas into square tiles row by row,
 * 3. put the whole image squashed to the base size (aspect ratio NOT kept) in front of the tiles,
 * 4. run every tile through the plain processor steps (resize, crop, rescale, normalise).
 *
 * Padding value: transformers pads the 8-bit resized image with 0 (np.pad, constant 0) before any
 * rescale or normalisation, so padded pixels come out as (0 - mean) / std per channel (about -1.79,
 * -1.75, -1.48 with the CLIP mean/std), not 0 and not the mean colour. The mean colour only appears in
 * OneVision's multi-image/video path (pad_to_square), which is not anyres and is not done here.
 *
 * `numberOfImageTokens` is the processors' `_get_number_of_features` (minus the CLS when the feature
 * strategy is "default"): how many <image> tokens one image expands to. It must equal the length that
 * src/models/mllm/anyres-layout.ts packs, and the tests check that over many sizes.
 *
 * Python arithmetic is mirrored where it matters: `int()` truncation, `round(x, 7)` and float `//`.
 * The "fast" (torchvision) processors resize differently and are not what this reproduces.
 */
import { UnimeError } from '../errors.js';
import { readCheckpointJson } from '../io/json.js';
import { tf, type Tensor } from '../runtime/tf.js';
import type { RgbImage } from './decode.js';
import {
  ImageProcessorConfigError,
  OPENAI_CLIP_MEAN,
  OPENAI_CLIP_STD,
  parseImageProcessorConfig,
  PREPROCESSOR_CONFIG,
  preprocessImage,
  resizeAndCrop,
  type ImageProcessorConfig,
} from './processor.js';
import { resizeImage } from './resample.js';

export type AnyresVariant = 'llava_next' | 'llava_onevision';

/** A grid pinpoint as transformers writes it: [height, width] in pixels. */
export type Pinpoint = readonly [number, number];

/** transformers' default image_grid_pinpoints for LlavaNextImageProcessor (llava-v1.6). */
export const LLAVA_NEXT_PINPOINTS: readonly Pinpoint[] = [
  [336, 672],
  [672, 336],
  [672, 672],
  [1008, 336],
  [336, 1008],
];

/** transformers' default image_grid_pinpoints for LlavaOnevisionImageProcessor: 384 * (1..6) squared. */
export const LLAVA_ONEVISION_PINPOINTS: readonly Pinpoint[] = [1, 2, 3, 4, 5, 6].flatMap((i) => [1, 2, 3, 4, 5, 6].map((j) => [384 * i, 384 * j] as const));

/** An anyres processor, with every default of its transformers class filled in. */
export interface AnyresProcessorConfig {
  variant: AnyresVariant;
  /** Possible [height, width] canvases. */
  pinpoints: Pinpoint[];
  /** Side of the square tiles cut from the padded canvas (crop_size.height for LLaVA-NeXT, size.height for OneVision). */
  tileSize: number;
  /** [height, width] the whole image is resized to (aspect ratio not kept) for the base tile. */
  baseSize: [number, number];
  /**
   * What transformers' `_preprocess` does to every tile, base included: LLaVA-NeXT as the CLIP
   * processor (shortest-edge resize, centre crop), OneVision as a fixed-size resize without crop.
   * Both then rescale and normalise.
   */
  tile: ImageProcessorConfig;
  /** Whether a batch pads its images' tile counts to the largest with zero tiles (a collator's job). */
  doPad: boolean;
}

const NEXT_TYPE = 'LlavaNextImageProcessor';
const ONEVISION_TYPE = 'LlavaOnevisionImageProcessor';

/** Read an anyres preprocessor_config.json from a checkpoint directory, or a file named directly. */
export async function readAnyresProcessorConfig(dirOrFile: string): Promise<AnyresProcessorConfig> {
  const { value, file } = await readCheckpointJson(dirOrFile, PREPROCESSOR_CONFIG, (problem, details) => new ImageProcessorConfigError(problem, details), {
    missing: 'point at a LLaVA-NeXT or LLaVA-OneVision checkpoint directory that has preprocessor_config.json',
  });
  return parseAnyresProcessorConfig(value, file);
}

/**
 * Validate a parsed LlavaNextImageProcessor / LlavaOnevisionImageProcessor preprocessor_config.json.
 * The per-tile steps are parsed by parseImageProcessorConfig under the class whose `_preprocess`
 * they copy, with the anyres class's own defaults filled in first.
 */
export function parseAnyresProcessorConfig(raw: unknown, file = PREPROCESSOR_CONFIG): AnyresProcessorConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ImageProcessorConfigError('must be a JSON object', { file });
  const c = raw as Record<string, unknown>;
  const type = c.image_processor_type;
  if (type !== NEXT_TYPE && type !== ONEVISION_TYPE) {
    throw new ImageProcessorConfigError(`image_processor_type must be ${NEXT_TYPE} or ${ONEVISION_TYPE}, got ${JSON.stringify(type)}`, {
      file,
      field: 'image_processor_type',
      fix: 'use parseImageProcessorConfig for CLIP / SigLIP processors',
    });
  }
  const variant: AnyresVariant = type === NEXT_TYPE ? 'llava_next' : 'llava_onevision';
  const bad = (field: string, what: string) =>
    new ImageProcessorConfigError(`must be ${what}, got ${JSON.stringify(c[field])}`, { file, field, fix: 'correct the field (compare with the model card on the Hub)' });
  const posInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

  const pp = c.image_grid_pinpoints ?? (variant === 'llava_next' ? LLAVA_NEXT_PINPOINTS : LLAVA_ONEVISION_PINPOINTS);
  if (!Array.isArray(pp) || pp.length === 0 || !pp.every((p) => Array.isArray(p) && p.length === 2 && posInt(p[0]) && posInt(p[1]))) {
    throw bad('image_grid_pinpoints', 'a non-empty list of [height, width] pairs of positive integers');
  }
  const pinpoints = (pp as number[][]).map((p) => [p[0]!, p[1]!] as const);
  const doPad = c.do_pad === undefined || c.do_pad === null ? true : c.do_pad;
  if (typeof doPad !== 'boolean') throw bad('do_pad', 'true or false');

  // transformers' get_size_dict: an int is the shortest edge (default_to_square=False for `size`).
  const sizeDict = (v: unknown, field: string): { shortest_edge: number } | { height: number; width: number } => {
    if (posInt(v)) return { shortest_edge: v };
    if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      if (posInt(o.shortest_edge) && !('longest_edge' in o)) return { shortest_edge: o.shortest_edge };
      if (posInt(o.height) && posInt(o.width)) return { height: o.height, width: o.width };
    }
    throw bad(field, 'a positive integer, {"shortest_edge": n} or {"height": h, "width": w}');
  };

  let tileSize: number;
  let baseSize: [number, number];
  let tile: ImageProcessorConfig;
  if (variant === 'llava_next') {
    const size = sizeDict(c.size ?? { shortest_edge: 224 }, 'size');
    // get_image_patches squashes the whole image to a square of the shortest edge (or min(h, w)).
    const s = 'shortest_edge' in size ? size.shortest_edge : Math.min(size.height, size.width);
    baseSize = [s, s];
    const crop = c.crop_size ?? { height: 224, width: 224 };
    if (posInt(crop)) tileSize = crop;
    else if (typeof crop === 'object' && crop !== null && posInt((crop as Record<string, unknown>).height)) tileSize = (crop as { height: number }).height;
    else throw bad('crop_size', 'a positive integer or {"height": h, "width": w}');
    // Same defaults as CLIPImageProcessor (bicubic, CLIP mean/std, centre crop 224).
    tile = parseImageProcessorConfig({ ...c, image_processor_type: 'CLIPImageProcessor', size: c.size ?? { shortest_edge: 224 } }, file);
  } else {
    const size = sizeDict(c.size ?? { height: 384, width: 384 }, 'size');
    const hw: [number, number] = 'shortest_edge' in size ? [size.shortest_edge, size.shortest_edge] : [size.height, size.width];
    baseSize = hw;
    tileSize = hw[0];
    // OneVision's _preprocess resizes to (height, width) and never crops: SigLIP's steps, with
    // OneVision's own defaults (bicubic, CLIP mean/std) instead of SigLIP's.
    tile = parseImageProcessorConfig(
      {
        ...c,
        image_processor_type: 'SiglipImageProcessor',
        size: { height: hw[0], width: hw[1] },
        resample: c.resample ?? 3,
        image_mean: c.image_mean ?? [...OPENAI_CLIP_MEAN],
        image_std: c.image_std ?? [...OPENAI_CLIP_STD],
      },
      file,
    );
  }
  return { variant, pinpoints, tileSize, baseSize, tile, doPad };
}

/**
 * transformers' select_best_resolution: the pinpoint [height, width] whose aspect-preserving fit
 * keeps the most original pixels (capped at the original's area), ties broken by the least waste,
 * first in list order on a full tie.
 */
export function selectBestResolution(origHeight: number, origWidth: number, pinpoints: readonly Pinpoint[]): [number, number] {
  checkSize(origHeight, origWidth);
  if (pinpoints.length === 0) throw new UnimeError('selectBestResolution needs at least one pinpoint');
  let best: [number, number] | null = null;
  let maxEffective = 0;
  let minWasted = Infinity;
  for (const [height, width] of pinpoints) {
    const scale = Math.min(width / origWidth, height / origHeight);
    const dw = Math.trunc(origWidth * scale);
    const dh = Math.trunc(origHeight * scale);
    const effective = Math.min(dw * dh, origWidth * origHeight);
    const wasted = width * height - effective;
    if (effective > maxEffective || (effective === maxEffective && wasted < minWasted)) {
      maxEffective = effective;
      minWasted = wasted;
      best = [height, width];
    }
  }
  // Python returns None here (every pinpoint rounds the image to nothing); say so instead.
  if (!best) throw new UnimeError(`no grid pinpoint fits a ${origHeight}x${origWidth} image`);
  return best;
}

/** transformers' get_patch_output_size: [height, width] of the image resized into the target, aspect kept. */
export function patchOutputSize(origHeight: number, origWidth: number, target: Pinpoint): [number, number] {
  const [th, tw] = target;
  const scaleW = tw / origWidth;
  const scaleH = th / origHeight;
  if (scaleW < scaleH) return [Math.min(Math.ceil(origHeight * scaleW), th), tw];
  return [th, Math.min(Math.ceil(origWidth * scaleH), tw)];
}

/**
 * The 8-bit images transformers' get_image_patches makes, base first: the whole image squashed to
 * the base size, then the tiles of the centred, zero-padded canvas, row by row. Each still has to go
 * through the per-tile steps (`anyresPixelArray` does both).
 */
export function anyresPatches(img: RgbImage, cfg: AnyresProcessorConfig): RgbImage[] {
  checkSize(img.height, img.width);
  const best = selectBestResolution(img.height, img.width, cfg.pinpoints);
  const [nh, nw] = patchOutputSize(img.height, img.width, best);
  const resized = resizeImage(img, nw, nh, cfg.tile.resample);
  const [th, tw] = best;
  // divmod(target - new, 2): the extra pixel of an odd margin goes to the bottom / right.
  const top = Math.floor((th - nh) / 2);
  const left = Math.floor((tw - nw) / 2);
  const canvas = new Uint8Array(th * tw * 3);
  for (let y = 0; y < nh; y++) canvas.set(resized.data.subarray(y * nw * 3, (y + 1) * nw * 3), ((y + top) * tw + left) * 3);

  const out: RgbImage[] = [resizeImage(img, cfg.baseSize[1], cfg.baseSize[0], cfg.tile.resample)];
  const t = cfg.tileSize;
  // divide_to_patches: numpy slicing, so tiles at the right / bottom edge may be smaller when a
  // pinpoint is not a multiple of the tile size (never the case for the released checkpoints).
  for (let y0 = 0; y0 < th; y0 += t) {
    for (let x0 = 0; x0 < tw; x0 += t) {
      const h = Math.min(t, th - y0);
      const w = Math.min(t, tw - x0);
      const data = new Uint8Array(h * w * 3);
      for (let y = 0; y < h; y++) data.set(canvas.subarray(((y0 + y) * tw + x0) * 3, ((y0 + y) * tw + x0 + w) * 3), y * w * 3);
      out.push({ width: w, height: h, data });
    }
  }
  return out;
}

/** One image -> its anyres pixel values, float32 [numPatches, 3, height, width] flattened, base first. */
export interface AnyresPixelArray {
  numPatches: number;
  height: number;
  width: number;
  data: Float32Array;
  /** The original [height, width] (transformers' image_sizes entry), what the model unpads to. */
  imageSize: [number, number];
}

export function anyresPixelArray(img: RgbImage, cfg: AnyresProcessorConfig): AnyresPixelArray {
  const arrays = anyresPatches(img, cfg).map((p) => preprocessImage(p, cfg.tile));
  const { height, width } = arrays[0]!;
  const bad = arrays.findIndex((a) => a.height !== height || a.width !== width);
  if (bad >= 0) {
    throw new UnimeError(`anyres tile ${bad} preprocesses to ${arrays[bad]!.height}x${arrays[bad]!.width}, the base to ${height}x${width}`, {
      fix: 'use grid pinpoints that are multiples of the tile size (crop_size / size)',
    });
  }
  const data = new Float32Array(arrays.length * 3 * height * width);
  arrays.forEach((a, i) => data.set(a.data, i * a.data.length));
  return { numPatches: arrays.length, height, width, data, imageSize: [img.height, img.width] };
}

/** transformers' pixel_values for one image: float32 tensor [numPatches, 3, height, width]. */
export function anyresPixelValues(img: RgbImage, cfg: AnyresProcessorConfig): Tensor {
  const a = anyresPixelArray(img, cfg);
  return tf.tensor4d(a.data, [a.numPatches, 3, a.height, a.width], 'float32');
}

/** transformers' image_size_to_num_patches: tiles of the best canvas plus the base. */
export function anyresNumPatches(origHeight: number, origWidth: number, pinpoints: readonly Pinpoint[], tileSize: number): number {
  const [h, w] = selectBestResolution(origHeight, origWidth, pinpoints);
  return Math.ceil(h / tileSize) * Math.ceil(w / tileSize) + 1;
}

/** What the processor needs to know to expand <image> into the right number of tokens. */
export interface AnyresTokenConfig {
  variant: AnyresVariant;
  pinpoints: readonly Pinpoint[];
  /** Side of a preprocessed tile (pixel_values' height = width; the vision tower's image_size). */
  tileSize: number;
  /** The vision tower's patch size. */
  patchSize: number;
  /** "default" drops the vision tower's CLS feature, "full" keeps every feature. */
  visionFeatureSelectStrategy: 'default' | 'full';
  /** LLaVA-NeXT processor's num_additional_image_tokens (1 for CLIP's CLS, 0 for SigLIP); default 1. */
  numAdditionalImageTokens?: number;
  /** OneVision's N of vision_aspect_ratio "anyres_max_N"; default 9. */
  maxNumPatches?: number;
}

/** The number of <image> tokens one image of the given original size expands to. */
export function numberOfImageTokens(origHeight: number, origWidth: number, cfg: AnyresTokenConfig): number {
  checkSize(origHeight, origWidth);
  const [bh, bw] = selectBestResolution(origHeight, origWidth, cfg.pinpoints);
  const t = cfg.tileSize;
  const scaleH = Math.floor(bh / t);
  const scaleW = Math.floor(bw / t);
  const patches = Math.floor(t / cfg.patchSize);
  if (scaleH < 1 || scaleW < 1 || patches < 1) {
    throw new UnimeError(`pinpoint ${bh}x${bw} is smaller than a ${t}-pixel tile, or the tile than a ${cfg.patchSize}-pixel patch`, {
      fix: 'use grid pinpoints that are multiples of the tile size (the vision tower\'s image_size)',
    });
  }
  const cur = unpaddedGrid(origHeight, origWidth, patches, patches, scaleH, scaleW);
  let unpadded = cur.height * cur.width;
  let newline = cur.height;
  let base = patches * patches;
  if (cfg.variant === 'llava_next') {
    base += cfg.numAdditionalImageTokens ?? 1;
  } else {
    const maxNum = cfg.maxNumPatches ?? 9;
    const ratio = Math.sqrt((cur.height * cur.width) / (maxNum * patches * patches));
    if (ratio > 1.1) {
      const rh = Math.trunc(pyFloorDiv(cur.height, ratio));
      const rw = Math.trunc(pyFloorDiv(cur.width, ratio));
      unpadded = rh * rw;
      newline = rh;
    }
  }
  let n = unpadded + newline + base;
  if (cfg.visionFeatureSelectStrategy === 'default') n -= 1;
  return n;
}

/** The feature grid the processors' _get_unpadded_features keeps (before OneVision's anyres_max cap). */
function unpaddedGrid(height: number, width: number, patchesH: number, patchesW: number, scaleH: number, scaleW: number): { height: number; width: number } {
  let ch = patchesH * scaleH;
  let cw = patchesW * scaleW;
  if (width / height > cw / ch) {
    const newHeight = truncRound7(height * (cw / width));
    ch -= Math.floor((ch - newHeight) / 2) * 2;
  } else {
    const newWidth = truncRound7(width * (ch / height));
    cw -= Math.floor((cw - newWidth) / 2) * 2;
  }
  return { height: ch, width: cw };
}

/**
 * Python's `int(round(x, 7))` for x >= 0. `toFixed(7)` rounds the exact binary value to the nearest
 * 7-decimal number as Python does; the two could differ only on an exact decimal tie, which a double
 * cannot hold at the 7th decimal (5^7 does not divide a power of two).
 */
export function truncRound7(x: number): number {
  return Math.trunc(Number(x.toFixed(7)));
}

/** Python's float floor division `a // b` (CPython float_floor_div), which can differ from Math.floor(a / b). */
export function pyFloorDiv(a: number, b: number): number {
  let mod = a % b;
  let div = (a - mod) / b;
  if (mod !== 0 && b < 0 !== mod < 0) {
    mod += b;
    div -= 1;
  }
  if (div === 0) return 0 * Math.sign(a / b);
  let floordiv = Math.floor(div);
  if (div - floordiv > 0.5) floordiv += 1;
  return floordiv;
}

/** The N of OneVision's vision_aspect_ratio "anyres_max_N". */
export function parseVisionAspectRatio(v: string): number {
  const m = /^anyres_max_(\d+)$/.exec(v);
  if (!m || Number(m[1]) < 1) {
    throw new UnimeError(`vision_aspect_ratio ${JSON.stringify(v)} is not supported`, { fix: 'use "anyres_max_N" (transformers reads only that form)' });
  }
  return Number(m[1]);
}

function checkSize(h: number, w: number): void {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) throw new UnimeError(`image size must be positive integers, got ${h}x${w}`);
}
