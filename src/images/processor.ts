/**
 * Hugging Face image processors, from preprocessor_config.json: CLIPImageProcessor (resize the
 * shortest edge, centre crop) and SiglipImageProcessor (resize to a fixed size), both followed by
 * rescale (1/255) and per-channel normalisation into channels-first float32 pixel values, exactly as
 * transformers computes them (Pillow's resampling, float32 arithmetic).
 *
 * LLaVA-NeXT / LLaVA-OneVision processors tile an image (src/images/anyres.ts reads them); here they are
 * refused with a pointer there, and so is Phi-3.5-V's HD-crop processor (src/images/hd-transform.ts).
 * Not yet: Qwen2-VL's patch flattening.
 */
import { NotImplementedYetError, UnimeError } from '../errors.js';
import { readCheckpointJson } from '../io/json.js';
import { tf, type Tensor } from '../runtime/tf.js';
import { decodeImage, type ImageSource, type RgbImage } from './decode.js';
import { PIL_RESAMPLE, resizeImage, type ResampleFilter } from './resample.js';

export class ImageProcessorConfigError extends UnimeError {}

export const PREPROCESSOR_CONFIG = 'preprocessor_config.json';
export const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;
export const IMAGENET_STANDARD_MEAN = [0.5, 0.5, 0.5] as const;
export const IMAGENET_STANDARD_STD = [0.5, 0.5, 0.5] as const;

export type ResizeSpec = { shortestEdge: number } | { height: number; width: number };

/** What a processor does, with every default of its transformers class filled in. */
export interface ImageProcessorConfig {
  /** The transformers class it mirrors. */
  type: 'CLIPImageProcessor' | 'SiglipImageProcessor';
  resize: ResizeSpec | null;
  resample: ResampleFilter;
  centerCrop: { height: number; width: number } | null;
  /** Multiplier applied before normalising (1/255), or null for none. */
  rescaleFactor: number | null;
  normalize: { mean: [number, number, number]; std: [number, number, number] } | null;
}

/** A preprocessed image: float32 [3, height, width], channels first. */
export interface PixelArray {
  height: number;
  width: number;
  data: Float32Array;
}

const SUPPORTED = ['CLIPImageProcessor', 'SiglipImageProcessor'];
/** Processors that make several tiles per image: src/images/anyres.ts reads them. */
const ANYRES = ['LlavaNextImageProcessor', 'LlavaOnevisionImageProcessor'];
const LATER: Record<string, string> = {
  Qwen2VLImageProcessor: "Qwen2-VL's dynamic-resolution patches",
};

/** Read preprocessor_config.json from a checkpoint directory, or a file named directly. */
export async function readImageProcessorConfig(dirOrFile: string): Promise<ImageProcessorConfig> {
  const { value, file } = await readCheckpointJson(dirOrFile, PREPROCESSOR_CONFIG, (problem, details) => new ImageProcessorConfigError(problem, details), {
    missing: 'point at a Hugging Face checkpoint directory that has preprocessor_config.json',
  });
  return parseImageProcessorConfig(value, file);
}

/** Validate a parsed preprocessor_config.json; `file` names it in errors. */
export function parseImageProcessorConfig(raw: unknown, file = PREPROCESSOR_CONFIG): ImageProcessorConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ImageProcessorConfigError('must be a JSON object', { file });
  }
  const c = raw as Record<string, unknown>;
  const bad = (field: string, what: string) =>
    new ImageProcessorConfigError(`must be ${what}, got ${JSON.stringify(c[field])}`, { file, field, fix: 'correct the field (compare with the model card on the Hub)' });
  // Older checkpoints (openai/clip-vit-large-patch14-336) name the class that preceded the image processor.
  const legacy = typeof c.feature_extractor_type === 'string' ? c.feature_extractor_type.replace(/FeatureExtractor$/, 'ImageProcessor') : undefined;
  const type = c.image_processor_type ?? legacy;
  if (typeof type !== 'string') throw bad('image_processor_type', `one of ${SUPPORTED.join(', ')}`);
  if (ANYRES.includes(type)) {
    throw new ImageProcessorConfigError(`${type} tiles each image (anyres); this reader makes one ${SUPPORTED.join(' / ')} image per input`, {
      file,
      field: 'image_processor_type',
      fix: 'load the LLaVA-NeXT / OneVision checkpoint with loadMultimodalModel (it reads this file with readAnyresProcessorConfig), or point at a CLIP / SigLIP checkpoint here',
    });
  }
  if (type === 'Phi3VImageProcessor') {
    throw new ImageProcessorConfigError(`${type} cuts each image into HD crops; this reader makes one ${SUPPORTED.join(' / ')} image per input`, {
      file,
      field: 'image_processor_type',
      fix: 'load the Phi-3.5-V checkpoint with loadMultimodalModel (it reads this file with readHdProcessorConfig), or point at a CLIP / SigLIP checkpoint here',
    });
  }
  if (LATER[type]) {
    throw new NotImplementedYetError(`${type} (${LATER[type]}) is not implemented yet`, {
      file,
      field: 'image_processor_type',
      fix: `only ${SUPPORTED.join(' and ')} are supported for now`,
    });
  }
  if (!SUPPORTED.includes(type)) throw bad('image_processor_type', `one of ${SUPPORTED.join(', ')}`);
  const clip = type === 'CLIPImageProcessor';
  const flag = (field: string, dflt: boolean): boolean => {
    const v = c[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') throw bad(field, 'true or false');
    return v;
  };
  const posInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0;
  const triple = (field: string, dflt: readonly number[]): [number, number, number] => {
    const v = c[field] ?? dflt;
    const arr = typeof v === 'number' ? [v, v, v] : v;
    if (!Array.isArray(arr) || arr.length !== 3 || !arr.every((x) => typeof x === 'number' && Number.isFinite(x))) throw bad(field, 'a number or a list of 3 numbers');
    return arr as [number, number, number];
  };

  let resize: ResizeSpec | null = null;
  if (flag('do_resize', true)) {
    const s = c.size ?? (clip ? { shortest_edge: 224 } : { height: 224, width: 224 });
    // An int size means the shortest edge for CLIP and a square for SigLIP (transformers' get_size_dict).
    if (posInt(s)) resize = clip ? { shortestEdge: s as number } : { height: s as number, width: s as number };
    else if (typeof s === 'object' && s !== null && posInt((s as Record<string, unknown>).shortest_edge) && !('longest_edge' in s)) {
      resize = { shortestEdge: (s as { shortest_edge: number }).shortest_edge };
    } else if (typeof s === 'object' && s !== null && posInt((s as Record<string, unknown>).height) && posInt((s as Record<string, unknown>).width)) {
      resize = { height: (s as { height: number }).height, width: (s as { width: number }).width };
    } else throw bad('size', 'a positive integer, {"shortest_edge": n} or {"height": h, "width": w}');
  }
  const code = c.resample ?? (clip ? 3 : 2);
  const resample = typeof code === 'number' ? PIL_RESAMPLE[code] : undefined;
  if (resample === undefined || resample === 'nearest') {
    throw bad('resample', 'a PIL resampling filter code: 1 (lanczos), 2 (bilinear), 3 (bicubic), 4 (box) or 5 (hamming)');
  }
  let centerCrop: ImageProcessorConfig['centerCrop'] = null;
  if (clip && flag('do_center_crop', true)) {
    const s = c.crop_size ?? { height: 224, width: 224 };
    if (posInt(s)) centerCrop = { height: s as number, width: s as number };
    else if (typeof s === 'object' && s !== null && posInt((s as Record<string, unknown>).height) && posInt((s as Record<string, unknown>).width)) {
      centerCrop = { height: (s as { height: number }).height, width: (s as { width: number }).width };
    } else throw bad('crop_size', 'a positive integer or {"height": h, "width": w}');
  }
  let rescaleFactor: number | null = null;
  if (flag('do_rescale', true)) {
    const f = c.rescale_factor ?? 1 / 255;
    if (typeof f !== 'number' || !Number.isFinite(f)) throw bad('rescale_factor', 'a number');
    rescaleFactor = f;
  }
  const normalize = flag('do_normalize', true)
    ? { mean: triple('image_mean', clip ? OPENAI_CLIP_MEAN : IMAGENET_STANDARD_MEAN), std: triple('image_std', clip ? OPENAI_CLIP_STD : IMAGENET_STANDARD_STD) }
    : null;
  if (normalize && normalize.std.some((s) => s === 0)) throw bad('image_std', 'non-zero');
  return { type: type as ImageProcessorConfig['type'], resize, resample, centerCrop, rescaleFactor, normalize };
}

/** transformers' get_resize_output_image_size with default_to_square=False: [height, width]. */
export function shortestEdgeSize(height: number, width: number, shortestEdge: number): [number, number] {
  const short = Math.min(height, width);
  const long = Math.max(height, width);
  const newLong = Math.trunc((shortestEdge * long) / short);
  return height <= width ? [shortestEdge, newLong] : [newLong, shortestEdge];
}

/** transformers' center_crop on an RGB image: zero-pads first when the crop is larger. */
export function centerCrop(img: RgbImage, height: number, width: number): RgbImage {
  const { width: ow, height: oh, data } = img;
  let top = Math.floor((oh - height) / 2);
  let left = Math.floor((ow - width) / 2);
  let src = img;
  let sh = oh, sw = ow;
  if (top < 0 || left < 0 || top + height > oh || left + width > ow) {
    sh = Math.max(height, oh);
    sw = Math.max(width, ow);
    const topPad = Math.ceil((sh - oh) / 2);
    const leftPad = Math.ceil((sw - ow) / 2);
    const padded = new Uint8Array(sh * sw * 3);
    for (let y = 0; y < oh; y++) padded.set(data.subarray(y * ow * 3, (y + 1) * ow * 3), ((y + topPad) * sw + leftPad) * 3);
    src = { width: sw, height: sh, data: padded };
    top += topPad;
    left += leftPad;
  }
  const y0 = Math.max(0, top), y1 = Math.min(sh, top + height);
  const x0 = Math.max(0, left), x1 = Math.min(sw, left + width);
  const outW = x1 - x0, outH = y1 - y0;
  const out = new Uint8Array(outW * outH * 3);
  for (let y = 0; y < outH; y++) out.set(src.data.subarray(((y0 + y) * sw + x0) * 3, ((y0 + y) * sw + x1) * 3), y * outW * 3);
  return { width: outW, height: outH, data: out };
}

/** The geometric steps alone (resize, crop): the 8-bit image the processor normalises. */
export function resizeAndCrop(img: RgbImage, cfg: ImageProcessorConfig): RgbImage {
  let out = img;
  if (cfg.resize) {
    const [h, w] = 'shortestEdge' in cfg.resize ? shortestEdgeSize(img.height, img.width, cfg.resize.shortestEdge) : [cfg.resize.height, cfg.resize.width];
    out = resizeImage(out, w, h, cfg.resample);
  }
  if (cfg.centerCrop) out = centerCrop(out, cfg.centerCrop.height, cfg.centerCrop.width);
  return out;
}

/** One image -> float32 [3, height, width]: resize, crop, rescale, normalise, channels first. */
export function preprocessImage(img: RgbImage, cfg: ImageProcessorConfig): PixelArray {
  const r = resizeAndCrop(img, cfg);
  const n = r.width * r.height;
  const out = new Float32Array(3 * n);
  const f = Math.fround;
  // float32 at every step, as numpy computes it (rescale goes through float64 first)
  const mean = cfg.normalize?.mean.map(f);
  const std = cfg.normalize?.std.map(f);
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < 3; ch++) {
      let v = r.data[i * 3 + ch]!;
      if (cfg.rescaleFactor !== null) v = f(v * cfg.rescaleFactor);
      if (mean && std) v = f(f(v - mean[ch]!) / std[ch]!);
      out[ch * n + i] = v;
    }
  }
  return { height: r.height, width: r.width, data: out };
}

/** A batch as transformers' pixel_values: float32 [batch, 3, height, width]. All images must end up the same size. */
export function pixelValues(images: RgbImage[], cfg: ImageProcessorConfig): Tensor {
  if (images.length === 0) throw new UnimeError('pixelValues needs at least one image');
  const arrays = images.map((im) => preprocessImage(im, cfg));
  const { height, width } = arrays[0]!;
  const bad = arrays.findIndex((a) => a.height !== height || a.width !== width);
  if (bad >= 0) {
    throw new UnimeError(`image ${bad} preprocesses to ${arrays[bad]!.height}x${arrays[bad]!.width}, image 0 to ${height}x${width}; a batch needs one size`, {
      fix: 'use a processor with a centre crop or a fixed size',
    });
  }
  const data = new Float32Array(arrays.length * 3 * height * width);
  arrays.forEach((a, i) => data.set(a.data, i * a.data.length));
  return tf.tensor4d(data, [arrays.length, 3, height, width], 'float32');
}

/** Decode and preprocess a batch of images (files, bytes, zip members) into pixel_values [batch, 3, H, W]. */
export async function processImages(sources: ImageSource[], cfg: ImageProcessorConfig): Promise<Tensor> {
  const images: RgbImage[] = [];
  for (const s of sources) images.push(await decodeImage(s));
  return pixelValues(images, cfg);
}
