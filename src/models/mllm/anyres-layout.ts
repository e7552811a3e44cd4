/**
 * How LLaVA-NeXT and LLaVA-OneVision lay the projected features of an anyres image out as tokens,
 * as transformers' modeling_llava_next.py / modeling_llava_onevision.py do (pack_image_features):
 *
 *     base tile features (n),
 *     then the tiles' features stitched into one grid (rows * side, cols * side),
 *     with the rows or columns that only saw the black padding cut away (unpad_image),
 *     OneVision only: bilinearly shrunk when larger than max_num_patches tiles' worth (anyres_max_N),
 *     each grid row followed by the learned image_newline vector.
 *
 * Everything is built from differentiable tfjs ops (slice, reshape, transpose, concat, tile, matMul),
 * so gradients reach the tile features and image_newline in training. The bilinear shrink is two
 * matMuls with PyTorch's interpolation weights (F.interpolate, bilinear, align_corners=False), which
 * every backend can run and differentiate.
 *
 * The token count the processor expands <image> to (numberOfImageTokens in src/images/anyres.ts) is
 * computed there the way transformers' processors compute it; this file follows the modeling code,
 * and the tests check that the two agree.
 */
import { UnimeError } from '../../errors.js';
import { pyFloorDiv, selectBestResolution, truncRound7, type AnyresVariant, type Pinpoint } from '../../images/anyres.js';
import { tf, type Tensor } from '../../runtime/tf.js';

/**
 * transformers' get_anyres_image_grid_shape: [rows, cols] of tiles for an image of the original
 * [height, width], where `tileSize` is the vision tower's image_size.
 */
export function gridShape(imageSize: readonly [number, number], pinpoints: readonly Pinpoint[], tileSize: number): [number, number] {
  const [h, w] = selectBestResolution(imageSize[0], imageSize[1], pinpoints);
  return [Math.floor(h / tileSize), Math.floor(w / tileSize)];
}

/** The part of a current [height, width] feature grid that unpad_image keeps: rows [top, top + height), cols [left, left + width). */
export interface UnpadWindow {
  top: number;
  height: number;
  left: number;
  width: number;
}

/** transformers' unpad_image arithmetic: cut the padding that centring the original image left. */
export function unpadWindow(currentHeight: number, currentWidth: number, originalSize: readonly [number, number]): UnpadWindow {
  const [oh, ow] = originalSize;
  if (ow / oh > currentWidth / currentHeight) {
    const newHeight = truncRound7(oh * (currentWidth / ow));
    const padding = Math.floor((currentHeight - newHeight) / 2);
    return { top: padding, height: currentHeight - 2 * padding, left: 0, width: currentWidth };
  }
  const newWidth = truncRound7(ow * (currentHeight / oh));
  const padding = Math.floor((currentWidth - newWidth) / 2);
  return { top: 0, height: currentHeight, left: padding, width: currentWidth - 2 * padding };
}

/** transformers' unpad_image on a channels-first feature map [C, H, W]. */
export function unpadFeatures(features: Tensor, originalSize: readonly [number, number]): Tensor {
  if (features.rank !== 3) throw new UnimeError(`unpadFeatures expects [channels, height, width], got shape [${features.shape.join(', ')}]`);
  const [c, h, w] = features.shape as [number, number, number];
  const win = unpadWindow(h, w, originalSize);
  return tf.slice(features, [0, win.top, win.left], [c, win.height, win.width]);
}

/**
 * OneVision's anyres_max_N cap: the [height, width] a current grid is bilinearly shrunk to, or null
 * when it stays (ratio <= 1.1). `side` is the tile's feature side (image_size // patch_size).
 */
export function anyresMaxSize(height: number, width: number, side: number, maxNumPatches: number): [number, number] | null {
  const ratio = Math.sqrt((height * width) / (maxNumPatches * side * side));
  if (!(ratio > 1.1)) return null;
  return [Math.trunc(pyFloorDiv(height, ratio)), Math.trunc(pyFloorDiv(width, ratio))];
}

/**
 * PyTorch's linear interpolation weights along one axis (upsample_bilinear2d, align_corners=False,
 * output size given): row i of the [outSize, inSize] matrix holds lambda0 at floor(src) and lambda1 at
 * the next index, src = (i + 0.5) * in / out - 0.5 clamped at 0, all in float32 as PyTorch computes them.
 */
export function bilinearMatrix(inSize: number, outSize: number): Float32Array {
  const f = Math.fround;
  const scale = f(inSize / outSize);
  const m = new Float32Array(outSize * inSize);
  for (let i = 0; i < outSize; i++) {
    let src = f(f(scale * f(i + 0.5)) - 0.5);
    if (src < 0) src = 0;
    const i0 = Math.trunc(src);
    const i1 = i0 < inSize - 1 ? i0 + 1 : i0;
    const l1 = Math.min(Math.max(f(src - i0), 0), 1);
    const l0 = f(1 - l1);
    m[i * inSize + i0]! += l0;
    m[i * inSize + i1]! += l1;
  }
  return m;
}

/** Bilinear resize (PyTorch's, align_corners=False) of a channels-last grid [H, W, D] to [outH, outW, D]. */
export function resizeBilinearHwc(x: Tensor, outH: number, outW: number): Tensor {
  const [h, w, d] = x.shape as [number, number, number];
  return tf.tidy(() => {
    const rh = tf.tensor2d(bilinearMatrix(h, outH), [outH, h]);
    const rw = tf.tensor2d(bilinearMatrix(w, outW), [outW, w]);
    const rows = tf.matMul(rh, tf.reshape(x, [h, w * d])); // [outH, W*D]
    const cols = tf.reshape(tf.transpose(tf.reshape(rows, [outH, w, d]), [1, 0, 2]), [w, outH * d]);
    const both = tf.matMul(rw, cols); // [outW, outH*D]
    return tf.transpose(tf.reshape(both, [outW, outH, d]), [1, 0, 2]);
  });
}

export interface PackOptions {
  variant: AnyresVariant;
  /** The model config's image_grid_pinpoints ([height, width] pairs). */
  pinpoints: readonly Pinpoint[];
  /** The vision tower's image_size (the side of one preprocessed tile). */
  imageSize: number;
  /** OneVision's N of vision_aspect_ratio "anyres_max_N"; default 9. Ignored for LLaVA-NeXT. */
  maxNumPatches?: number;
}

/**
 * One image's projected features -> its token sequence [tokens, D], as pack_image_features.
 *
 * @param baseFeatures  [n, D]: the base (whole image) tile, n = side * side after feature selection.
 * @param tileFeatures  [numTiles, n, D]: the grid tiles in processor order (row by row); numTiles 0
 *                      takes transformers' single-patch branch (base, then one newline).
 * @param imageNewline  [D]: the model's image_newline parameter.
 * @param originalSize  the image's original [height, width] (image_sizes).
 */
export function packImageFeatures(baseFeatures: Tensor, tileFeatures: Tensor, imageNewline: Tensor, originalSize: readonly [number, number], opts: PackOptions): Tensor {
  if (baseFeatures.rank !== 2) throw new UnimeError(`base features must be [n, D], got shape [${baseFeatures.shape.join(', ')}]`);
  const [n, d] = baseFeatures.shape as [number, number];
  if (tileFeatures.rank !== 3 || tileFeatures.shape[1] !== n || tileFeatures.shape[2] !== d) {
    throw new UnimeError(`tile features must be [numTiles, ${n}, ${d}] like the base, got shape [${tileFeatures.shape.join(', ')}]`);
  }
  if (imageNewline.rank !== 1 || imageNewline.shape[0] !== d) throw new UnimeError(`image_newline must be [${d}], got shape [${imageNewline.shape.join(', ')}]`);
  const numTiles = tileFeatures.shape[0]!;
  return tf.tidy(() => {
    if (numTiles === 0) return tf.concat([baseFeatures, tf.reshape(imageNewline, [1, d])], 0);

    const side = Math.round(Math.sqrt(n));
    if (side * side !== n) {
      throw new UnimeError(`a tile has ${n} features, not a square grid`, {
        fix: 'drop the CLS feature first (vision_feature_select_strategy "default" with a CLIP tower)',
      });
    }
    const [rows, cols] = gridShape(originalSize, opts.pinpoints, opts.imageSize);
    if (rows * cols !== numTiles) {
      throw new UnimeError(`a ${originalSize[0]}x${originalSize[1]} image has ${rows}x${cols} tiles, got features for ${numTiles}`, {
        fix: 'pass the features of all tiles anyresPatches made for this image, and the same pinpoints',
      });
    }
    // [rows, cols, side, side, D] -> [rows, side, cols, side, D] -> one channels-last grid.
    let grid = tf.reshape(tf.transpose(tf.reshape(tileFeatures, [rows, cols, side, side, d]), [0, 2, 1, 3, 4]), [rows * side, cols * side, d]);
    const win = unpadWindow(rows * side, cols * side, originalSize);
    grid = tf.slice(grid, [win.top, win.left, 0], [win.height, win.width, d]);
    let [h, w] = [win.height, win.width];
    if (opts.variant === 'llava_onevision') {
      const shrunk = anyresMaxSize(h, w, side, opts.maxNumPatches ?? 9);
      if (shrunk) {
        grid = resizeBilinearHwc(grid, shrunk[0], shrunk[1]);
        [h, w] = shrunk;
      }
    }
    const newlines = tf.tile(tf.reshape(imageNewline, [1, 1, d]), [h, 1, 1]);
    const packed = tf.reshape(tf.concat([grid, newlines], 1), [h * (w + 1), d]);
    return tf.concat([baseFeatures, packed], 0);
  });
}
