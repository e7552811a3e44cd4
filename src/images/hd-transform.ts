/**
 * Phi-3.5-V's image processor (the remote-code Phi3VImageProcessor, preprocessor_config.json with
 * image_processor_type "Phi3VImageProcessor"): the HD transform of InternLM-XComposer2-4KHD.
 *
 *   1. Lay the image wide (transpose when it is taller than wide), pick the largest `scale` with
 *      scale * ceil(scale / ratio) <= num_crops, resize (Pillow bilinear) to width scale * S keeping
 *      the aspect ratio, pad the height with white up to a multiple of S (centred, the odd row at the
 *      bottom), transpose back. S is the vision tower's image size (336 for Phi-3.5-V).
 *   2. ToTensor (/255) and normalise with the checkpoint's mean and std (CLIP's), float32.
 *   3. The global view: that whole padded image resized to S x S with torch's bicubic interpolation
 *      (align_corners false, no antialiasing) of the normalised values.
 *   4. The crops: the padded image cut into rows x cols tiles of S x S, row by row.
 *
 * pixels = [global, crop(0,0), crop(0,1), ...], float32 [1 + rows * cols, 3, S, S]. The reference pads
 * every image to num_crops + 1 views with zeros for batching; those views are never read, so they
 * are not made here.
 */
import { UnimeError } from '../errors.js';
import { readCheckpointJson } from '../io/json.js';
import type { RgbImage } from './decode.js';
import { ImageProcessorConfigError, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PREPROCESSOR_CONFIG } from './processor.js';
import { resizeImage } from './resample.js';

export interface HdProcessorConfig {
  type: 'Phi3VImageProcessor';
  /** hd_num: the most S x S crops an image is cut into. */
  numCrops: number;
  mean: [number, number, number];
  std: [number, number, number];
}

/** The HD layout of one image: its padded size and its crop grid. */
export interface HdLayout {
  /** Whether the image was laid wide (transposed) for the computation. */
  transposed: boolean;
  /** Size after the aspect-preserving resize, in the image's own orientation. */
  resizedWidth: number;
  resizedHeight: number;
  /** Size after padding to multiples of the crop size. */
  paddedWidth: number;
  paddedHeight: number;
  rows: number;
  cols: number;
}

export interface HdPixels {
  layout: HdLayout;
  /** float32 [1 + rows * cols, 3, S, S]: the global view first, then the crops row by row. */
  data: Float32Array;
}

/** Read the Phi3VImageProcessor fields of preprocessor_config.json (defaults of the remote-code class). */
export async function readHdProcessorConfig(dirOrFile: string): Promise<HdProcessorConfig> {
  const { value, file } = await readCheckpointJson(dirOrFile, PREPROCESSOR_CONFIG, (problem, details) => new ImageProcessorConfigError(problem, details), {
    missing: 'point at a Phi-3.5-V checkpoint directory that has preprocessor_config.json',
  });
  return parseHdProcessorConfig(value, file);
}

export function parseHdProcessorConfig(raw: unknown, file = PREPROCESSOR_CONFIG): HdProcessorConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ImageProcessorConfigError('must be a JSON object', { file });
  const c = raw as Record<string, unknown>;
  if (c.image_processor_type !== 'Phi3VImageProcessor') {
    throw new ImageProcessorConfigError(`must be "Phi3VImageProcessor" for a phi3_v checkpoint, got ${JSON.stringify(c.image_processor_type)}`, {
      file,
      field: 'image_processor_type',
      fix: "use the preprocessor_config.json of the checkpoint (microsoft/Phi-3.5-vision-instruct's has image_processor_type Phi3VImageProcessor)",
    });
  }
  // The remote-code class defaults to num_crops 1; Phi-3.5-vision-instruct ships 4.
  const numCrops = c.num_crops ?? 1;
  if (typeof numCrops !== 'number' || !Number.isInteger(numCrops) || numCrops < 1) {
    throw new ImageProcessorConfigError(`must be a positive integer, got ${JSON.stringify(numCrops)}`, {
      file,
      field: 'num_crops',
      fix: 'set num_crops to the most crops per image (4 for UniME / VLM2Vec embeddings, 16 in Phi-3.5-V chat)',
    });
  }
  const triple = (field: string, dflt: readonly number[]): [number, number, number] => {
    const v = c[field] ?? dflt;
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw new ImageProcessorConfigError(`must be a list of 3 numbers, got ${JSON.stringify(v)}`, { file, field, fix: 'give one value per RGB channel' });
    }
    return [v[0], v[1], v[2]];
  };
  const std = triple('image_std', OPENAI_CLIP_STD);
  if (std.some((s) => s === 0)) throw new ImageProcessorConfigError('must not hold a zero', { file, field: 'image_std' });
  return { type: 'Phi3VImageProcessor', numCrops, mean: triple('image_mean', OPENAI_CLIP_MEAN), std };
}

/** Where an image of this size lands: the reference's HD_transform sizes, for crop size `cropSize`. */
export function hdLayout(width: number, height: number, numCrops: number, cropSize: number): HdLayout {
  if (!(Number.isInteger(numCrops) && numCrops >= 1)) throw new UnimeError(`num_crops must be a positive integer, got ${numCrops}`, { field: 'num_crops' });
  const transposed = width < height;
  const [w, h] = transposed ? [height, width] : [width, height];
  const ratio = w / h;
  let scale = 1;
  while (scale * Math.ceil(scale / ratio) <= numCrops) scale++;
  scale--;
  const newW = Math.trunc(scale * cropSize);
  const newH = Math.trunc(newW / ratio);
  if (newH < 1) {
    throw new UnimeError(`an image of ${width}x${height} is too elongated for the HD transform (it would be resized to ${newH} pixels across)`, {
      fix: 'crop the image closer to a square before embedding it',
    });
  }
  const paddedH = Math.ceil(newH / cropSize) * cropSize;
  const rowsWide = paddedH / cropSize;
  const colsWide = newW / cropSize;
  return transposed
    ? { transposed, resizedWidth: newH, resizedHeight: newW, paddedWidth: paddedH, paddedHeight: newW, rows: colsWide, cols: rowsWide }
    : { transposed, resizedWidth: newW, resizedHeight: newH, paddedWidth: newW, paddedHeight: paddedH, rows: rowsWide, cols: colsWide };
}

/**
 * Image tokens of an image with this crop grid, for `merged` tokens per side of one crop after the
 * 2x2 merge (12 for Phi-3.5-V): the crops with a separator after each row, glb_GN, the global view
 * with its row separators. (rows * cols + 1) * merged^2 + 1 + (rows + 1) * merged.
 */
export function hdImageTokens(rows: number, cols: number, merged: number): number {
  return (rows * cols + 1) * merged * merged + 1 + (rows + 1) * merged;
}

function transposeRgb(img: RgbImage): RgbImage {
  const { width: w, height: h, data } = img;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const s = (y * w + x) * 3;
      const d = (x * h + y) * 3;
      out[d] = data[s]!;
      out[d + 1] = data[s + 1]!;
      out[d + 2] = data[s + 2]!;
    }
  return { width: h, height: w, data: out };
}

/** The padded HD image, 8-bit, before normalisation (Pillow's resize, white padding), and its layout. */
export function hdResizePad(img: RgbImage, numCrops: number, cropSize: number): { image: RgbImage; layout: HdLayout } {
  const layout = hdLayout(img.width, img.height, numCrops, cropSize);
  // Resize and pad in the wide orientation, as the reference does: Pillow's two passes round to
  // 8 bits in between, so resizing the transposed image is not the same as resizing the other way.
  let wide = layout.transposed ? transposeRgb(img) : img;
  const newW = layout.transposed ? layout.resizedHeight : layout.resizedWidth;
  const newH = layout.transposed ? layout.resizedWidth : layout.resizedHeight;
  wide = resizeImage(wide, newW, newH, 'bilinear');
  const paddedH = layout.transposed ? layout.paddedWidth : layout.paddedHeight;
  const top = Math.trunc((paddedH - newH) / 2);
  const padded = new Uint8Array(newW * paddedH * 3).fill(255);
  padded.set(wide.data, top * newW * 3);
  const out: RgbImage = { width: newW, height: paddedH, data: padded };
  return { image: layout.transposed ? transposeRgb(out) : out, layout };
}

/**
 * torch.nn.functional.interpolate(mode='bicubic', align_corners=False) of float [3, inH, inW] to
 * [3, outH, outW]: Keys' cubic (A = -0.75) on the 4 x 4 neighbourhood, edge pixels repeated, no
 * antialiasing when shrinking.
 */
export function bicubicResizeChw(src: Float32Array, inH: number, inW: number, outH: number, outW: number): Float32Array {
  const A = -0.75;
  const weights = (t: number): [number, number, number, number] => {
    const c1 = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
    const c2 = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    return [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)];
  };
  const taps = (inSize: number, outSize: number) => {
    const scale = inSize / outSize;
    const idx = new Int32Array(outSize * 4);
    const w = new Float64Array(outSize * 4);
    for (let o = 0; o < outSize; o++) {
      const real = (o + 0.5) * scale - 0.5;
      const i0 = Math.floor(real);
      const ws = weights(real - i0);
      for (let k = 0; k < 4; k++) {
        idx[o * 4 + k] = Math.min(Math.max(i0 - 1 + k, 0), inSize - 1);
        w[o * 4 + k] = ws[k]!;
      }
    }
    return { idx, w };
  };
  const ty = taps(inH, outH);
  const tx = taps(inW, outW);
  const out = new Float32Array(3 * outH * outW);
  for (let c = 0; c < 3; c++) {
    const plane = c * inH * inW;
    for (let oy = 0; oy < outH; oy++)
      for (let ox = 0; ox < outW; ox++) {
        let acc = 0;
        for (let a = 0; a < 4; a++) {
          const row = plane + ty.idx[oy * 4 + a]! * inW;
          let r = 0;
          for (let b = 0; b < 4; b++) r += src[row + tx.idx[ox * 4 + b]!]! * tx.w[ox * 4 + b]!;
          acc += r * ty.w[oy * 4 + a]!;
        }
        out[(c * outH + oy) * outW + ox] = acc;
      }
  }
  return out;
}

/** The HD transform of one image for a vision tower of image size `cropSize`. */
export function hdPreprocess(img: RgbImage, cfg: HdProcessorConfig, cropSize: number): HdPixels {
  const { image, layout } = hdResizePad(img, cfg.numCrops, cropSize);
  const { width: W, height: H } = image;
  const f = Math.fround;
  const mean = cfg.mean.map(f);
  const std = cfg.std.map(f);
  // ToTensor then Normalize, in float32 as torchvision computes them
  const full = new Float32Array(3 * H * W);
  for (let i = 0; i < H * W; i++)
    for (let c = 0; c < 3; c++) full[c * H * W + i] = f(f(f(image.data[i * 3 + c]! / 255) - mean[c]!) / std[c]!);
  const S = cropSize;
  const n = layout.rows * layout.cols;
  const data = new Float32Array((1 + n) * 3 * S * S);
  data.set(bicubicResizeChw(full, H, W, S, S), 0);
  for (let r = 0; r < layout.rows; r++)
    for (let q = 0; q < layout.cols; q++) {
      const view = 1 + r * layout.cols + q;
      for (let c = 0; c < 3; c++)
        for (let y = 0; y < S; y++) {
          const from = c * H * W + (r * S + y) * W + q * S;
          data.set(full.subarray(from, from + S), ((view * 3 + c) * S + y) * S);
        }
    }
  return { layout, data };
}
