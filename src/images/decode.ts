/**
 * Image decoding (PNG, JPEG, WebP, and whatever else libvips reads) into 8-bit RGB, through sharp.
 * Colour handling follows PIL's `convert('RGB')`, which Hugging Face processors apply: alpha is
 * dropped (not composited), grey is replicated into three channels. Sharp is loaded on first use,
 * so the rest of unime works where its native binary is missing.
 */
import { promises as fsp } from 'node:fs';
import { UnimeError } from '../errors.js';
import type { ZipArchive } from './zip.js';

export class ImageDecodeError extends UnimeError {}

/** Interleaved 8-bit RGB, row-major: data[(y * width + x) * 3 + c]. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** A file path, the encoded bytes (e.g. a parquet image column), or a member of a zip archive. */
export type ImageSource = string | Uint8Array | { zip: ZipArchive; member: string };

export interface DecodeOptions {
  /** How errors name the image when it has no path of its own (bytes). */
  label?: string;
}

type SharpModule = typeof import('sharp');
let sharpModule: Promise<SharpModule['default']> | undefined;

async function loadSharp(): Promise<SharpModule['default']> {
  sharpModule ??= import('sharp').then(
    (m) => m.default,
    (e: unknown) => {
      sharpModule = undefined;
      throw new ImageDecodeError(`the image decoder (sharp) could not be loaded: ${(e as Error).message}`, {
        fix: 'reinstall dependencies with `npm ci` on this platform (sharp ships prebuilt binaries as @img/sharp-* packages)',
        cause: e,
      });
    },
  );
  return sharpModule;
}

/** Decode an image into RGB. Errors name the file (or zip member, or label). */
export async function decodeImage(source: ImageSource, options: DecodeOptions = {}): Promise<RgbImage> {
  let bytes: Uint8Array;
  let label: string;
  if (typeof source === 'string') {
    label = source;
    try {
      bytes = await fsp.readFile(source);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ImageDecodeError(code === 'ENOENT' ? 'image file not found' : `could not read image: ${(e as Error).message}`, { file: source, cause: e });
    }
  } else if (source instanceof Uint8Array) {
    label = options.label ?? `<${source.byteLength} bytes>`;
    bytes = source;
  } else {
    label = `${source.zip.path}:${source.member}`;
    bytes = await source.zip.read(source.member);
  }
  return decodeBytes(bytes, label);
}

async function decodeBytes(bytes: Uint8Array, label: string): Promise<RgbImage> {
  const sharp = await loadSharp();
  try {
    const { data, info } = await sharp(bytes)
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (e) {
    throw new ImageDecodeError(`not a readable image (${firstLine((e as Error).message)})`, {
      file: label,
      fix: 'check that the file is a PNG, JPEG or WebP image and is not truncated',
      cause: e,
    });
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.trim();
}

/** [height, width, 3] floats in 0..255 -> the same layout scaled by `scale` (e.g. 1/255). */
export function imageToFloat(img: RgbImage, scale = 1): Float32Array {
  const out = new Float32Array(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = img.data[i]! * scale;
  return out;
}
