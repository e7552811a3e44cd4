import type { Argv } from 'yargs';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { handler } from './common.js';
import { countImageMarkers, getPromptTemplate, SENTENCE_SLOT } from '../tokenizers/templates.js';

export const command = 'embed';
export const describe = 'Embed your own texts and images';
export function builder(y: Argv) {
  return y
    .option('model', { type: 'string', describe: 'checkpoint directory or Hub id', demandOption: true })
    .option('text', { type: 'string', array: true, describe: 'texts to embed (repeatable)' })
    .option('image', { type: 'string', array: true, describe: 'image files to embed (repeatable; paired with --text in order when both are given)' })
    .option('input', { type: 'string', describe: 'a .jsonl file with {text?, image?} rows (image paths relative to the file), or a .txt file with one text a line' })
    .option('adapter', { type: 'string', array: true, describe: 'LoRA adapter (or training stage) directory merged into the model, in order (repeatable)' })
    .option('out', { type: 'string', describe: 'output file (.npy or .jsonl); default: jsonl on stdout' })
    .option('pooling', { type: 'string', choices: ['last', 'mean'] as const, default: 'last' as const })
    .option('template', { type: 'string', default: 'none', describe: 'prompt template: a backbone name (phi3.5-v, ...), a prompt holding <sent>, or none' })
    .option('instruction', { type: 'string', default: '', describe: 'prefix put before every text' })
    .option('normalize', { type: 'boolean', default: true, describe: 'L2-normalise the embeddings (--no-normalize skips it)' })
    .option('bidirectional', {
      type: 'boolean',
      default: false,
      describe: 'bidirectional attention, as LLM2Vec-style text embedders use it (a caption-contrastive teacher: with --pooling mean); texts only',
    })
    .option('batch-size', { type: 'number', default: 16 })
    .option('max-length', { type: 'number', describe: 'truncate texts to this many tokens' })
    .option('device', { type: 'string', choices: ['auto', 'cpu', 'native', 'cuda'], default: 'auto' });
}

interface Args {
  model: string;
  text?: string[];
  image?: string[];
  input?: string;
  adapter?: string[];
  out?: string;
  pooling: 'last' | 'mean';
  template: string;
  instruction: string;
  normalize: boolean;
  bidirectional: boolean;
  batchSize: number;
  maxLength?: number;
  device: string;
}

/** One thing to embed: a text, an image file, or both. */
export interface EmbedRow {
  text?: string;
  /** The image as the user wrote it (echoed in jsonl output). */
  image?: string;
  /** The file that image names: jsonl paths are relative to the jsonl file's directory, --image ones to the working directory. */
  imageFile?: string;
}

const ROW_FIX = 'write one {"text": ...}, {"image": ...} or {"text": ..., "image": ...} object a line';

/** Rows of an input file: jsonl rows {text?, image?}, or lines of a text file (one text each). */
export async function readEmbedInput(file: string): Promise<EmbedRow[]> {
  let raw: string;
  try {
    raw = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new UnimeError(`cannot read the input file: ${(e as Error).message}`, { file, fix: 'check the --input path' });
  }
  const lines = raw.split(/\r?\n/);
  if (path.extname(file).toLowerCase() !== '.jsonl') return lines.filter((l) => l.trim().length > 0).map((text) => ({ text }));
  const rows: EmbedRow[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new UnimeError(`invalid JSON: ${(e as Error).message}`, { file, line: i + 1, fix: ROW_FIX });
    }
    const r = row as { text?: unknown; image?: unknown };
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new UnimeError('a row must be an object', { file, line: i + 1, fix: ROW_FIX });
    const hasImage = r.image !== undefined && r.image !== null;
    if (hasImage && (typeof r.image !== 'string' || r.image === '')) throw new UnimeError('"image" must be an image file path', { file, line: i + 1, fix: ROW_FIX });
    if (r.text !== undefined && r.text !== null && typeof r.text !== 'string') throw new UnimeError('"text" must be a string', { file, line: i + 1, fix: ROW_FIX });
    const text = typeof r.text === 'string' ? r.text : undefined;
    if (text === undefined && !hasImage) throw new UnimeError('the row has no "text" string and no "image"', { file, line: i + 1, fix: ROW_FIX });
    const out: EmbedRow = {};
    if (text !== undefined) out.text = text;
    if (hasImage) {
      out.image = r.image as string;
      out.imageFile = path.resolve(path.dirname(file), r.image as string);
    }
    rows.push(out);
  });
  return rows;
}

/** Rows from --text / --image: paired one to one when both are given, else each on its own. */
export function commandLineRows(texts: readonly string[], images: readonly string[]): EmbedRow[] {
  if (texts.length > 0 && images.length > 0) {
    if (texts.length !== images.length) {
      throw new UnimeError(`got ${texts.length} --text and ${images.length} --image values; with both, each text goes with the image at the same position`, {
        fix: 'pass one --text per --image, or embed texts and images in separate runs (or use --input rows)',
      });
    }
    return texts.map((text, i) => ({ text, image: images[i]!, imageFile: path.resolve(images[i]!) }));
  }
  return [...texts.map((text) => ({ text })), ...images.map((image) => ({ image, imageFile: path.resolve(image) }))];
}

/** A float32 matrix as a .npy file (format version 1.0, C order). */
export function encodeNpy(data: Float32Array, shape: readonly number[]): Uint8Array {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]); // \x93NUMPY v1.0
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

function looksLikeHubId(s: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(s);
}

/** The text fed to a multimodal model: instruction, template (an image row without text takes the template's image prompt). */
export function multimodalPrompt(row: EmbedRow, template: string, instruction: string, prompt: string | null): string {
  const hasImage = row.imageFile !== undefined;
  if (hasImage && (row.text ?? '') === '' && instruction === '' && prompt !== null && !template.includes(SENTENCE_SLOT)) {
    return getPromptTemplate(template).image;
  }
  let body = instruction + (row.text ?? '');
  // the image goes first in the prompt's text slot unless the text says where
  if (hasImage && prompt !== null && countImageMarkers(body) === 0) body = `<image>\n${body}`;
  return prompt === null ? body : prompt.replace(SENTENCE_SLOT, () => body);
}

async function run(args: Args): Promise<void> {
  const rows = commandLineRows(args.text ?? [], args.image ?? []);
  if (args.input !== undefined) rows.push(...(await readEmbedInput(args.input)));
  if (rows.length === 0) throw new UnimeError('nothing to embed', { fix: 'pass --text "..." / --image file (repeatable) or --input file.jsonl|file.txt' });
  const out = args.out;
  const ext = out === undefined ? '.jsonl' : path.extname(out).toLowerCase();
  if (ext !== '.jsonl' && ext !== '.npy') throw new UnimeError(`unknown output format "${ext}"`, { fix: 'name the --out file *.jsonl or *.npy' });
  if (!(Number.isInteger(args.batchSize) && args.batchSize > 0)) throw new UnimeError(`--batch-size must be a positive integer, got ${args.batchSize}`);
  if (args.maxLength !== undefined && !(Number.isInteger(args.maxLength) && args.maxLength > 0)) {
    throw new UnimeError(`--max-length must be a positive integer, got ${args.maxLength}`);
  }
  const local = path.resolve(args.model);
  if (!existsSync(local) && !looksLikeHubId(args.model)) {
    throw new UnimeError(`no such model: '${args.model}' is not a directory (looked for ${local}) and not a Hub id`, {
      fix: 'pass a checkpoint directory or a Hub id as owner/name',
    });
  }
  for (const r of rows) {
    if (r.imageFile !== undefined && !existsSync(r.imageFile)) throw new UnimeError('no such image file', { file: r.imageFile, fix: 'check the --image / "image" path' });
  }
  const images = rows.filter((r) => r.imageFile !== undefined).length;
  if (args.bidirectional && images > 0) {
    throw new UnimeError(`--bidirectional embeds texts only, and ${images} input${images === 1 ? ' has' : 's have'} an image`, {
      field: '--bidirectional',
      fix: 'embed images with the causal model (drop --bidirectional), or embed the texts in a separate run',
    });
  }
  for (const r of rows) {
    if (r.imageFile === undefined && countImageMarkers(args.instruction + (r.text ?? '')) > 0) {
      throw new UnimeError(`a text has an image marker but no image was given: ${JSON.stringify((r.text ?? '').slice(0, 80))}`, {
        fix: 'give its image (--image, or "image" in the --input row), or remove the marker',
      });
    }
  }
  const { resolveAdapterChain } = await import('../models/peft/chain.js');
  const adapters: string[] = [];
  for (const a of args.adapter ?? []) adapters.push(...(await resolveAdapterChain(a, '--adapter')));
  const { resolveTemplate } = await import('../models/text-embedder.js');
  const prompt = resolveTemplate(args.template);

  const { initRuntime } = await import('../runtime/index.js');
  const { writeBytesAtomic } = await import('../io/atomic.js');
  await initRuntime({ device: args.device as 'auto' });
  let emb: Float32Array;
  let d: number;
  const t0 = performance.now();
  if (images === 0 && (adapters.length === 0 || args.bidirectional)) {
    const { TextEmbedder } = await import('../models/text-embedder.js');
    const embedder = await TextEmbedder.load(args.model, {
      pooling: args.pooling,
      normalize: args.normalize,
      template: args.template,
      instruction: args.instruction,
    });
    try {
      // As the teacher-embed stage runs a caption-contrastive teacher: attention both ways, adapters merged.
      embedder.decoder.bidirectional = args.bidirectional;
      if (adapters.length > 0) {
        const { mergeAdapterChain } = await import('../models/peft/chain.js');
        await mergeAdapterChain(embedder.decoder, adapters);
      }
      emb = await embedder.embed(rows.map((r) => r.text ?? ''), { batchSize: args.batchSize, maxLength: args.maxLength });
      d = embedder.dim;
    } finally {
      embedder.dispose();
    }
  } else {
    const { MultimodalEmbedder } = await import('../models/mllm/embedder.js');
    const embedder = await MultimodalEmbedder.load(args.model, { adapters, pooling: args.pooling, normalize: args.normalize });
    try {
      const inputs = rows.map((r) => ({ text: multimodalPrompt(r, args.template, args.instruction, prompt), image: r.imageFile ?? null }));
      emb = await embedder.embed(inputs, { batchSize: args.batchSize, maxLength: args.maxLength });
      d = embedder.dim;
    } finally {
      embedder.dispose();
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  let bytes: Uint8Array | string;
  if (ext === '.npy') {
    bytes = encodeNpy(emb, [rows.length, d]);
  } else {
    bytes = rows.map((row, i) => JSON.stringify({ text: row.text, image: row.image, embedding: Array.from(emb.subarray(i * d, (i + 1) * d)) }) + '\n').join('');
  }
  if (out === undefined) process.stdout.write(bytes);
  else await writeBytesAtomic(path.resolve(out), bytes);
  const rate = seconds > 0 ? rows.length / seconds : Infinity;
  const what = images === 0 ? `${rows.length} text${rows.length === 1 ? '' : 's'}` : `${rows.length} input${rows.length === 1 ? '' : 's'} (${images} with an image)`;
  const merged = adapters.length === 0 ? '' : `, ${adapters.length} adapter${adapters.length === 1 ? '' : 's'} merged`;
  process.stderr.write(`embedded ${what}, dim ${d}${merged}, ${rate.toFixed(1)} embeddings/s${out === undefined ? '' : ` -> ${out}`}\n`);
}

const handle = handler(run);
export { handle as handler };
