import type { Argv } from 'yargs';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { NotImplementedYetError, UnimeError } from '../errors.js';
import { handler } from './common.js';

export const command = 'embed';
export const describe = 'Embed your own texts and images';
export function builder(y: Argv) {
  return y
    .option('model', { type: 'string', describe: 'checkpoint directory or Hub id', demandOption: true })
    .option('text', { type: 'string', array: true, describe: 'texts to embed (repeatable)' })
    .option('image', { type: 'string', array: true, describe: 'image files to embed (repeatable)' })
    .option('input', { type: 'string', describe: 'a .jsonl file with {text?, image?} rows, or a .txt file with one text a line' })
    .option('out', { type: 'string', describe: 'output file (.npy or .jsonl); default: jsonl on stdout' })
    .option('pooling', { type: 'string', choices: ['last', 'mean'] as const, default: 'last' as const })
    .option('template', { type: 'string', default: 'none', describe: 'prompt template: a backbone name (phi3.5-v, ...), a prompt holding <sent>, or none' })
    .option('instruction', { type: 'string', default: '', describe: 'prefix put before every text' })
    .option('normalize', { type: 'boolean', default: true, describe: 'L2-normalise the embeddings (--no-normalize skips it)' })
    .option('batch-size', { type: 'number', default: 16 })
    .option('max-length', { type: 'number', describe: 'truncate texts to this many tokens' })
    .option('device', { type: 'string', choices: ['auto', 'cpu', 'native', 'cuda'], default: 'auto' });
}

interface Args {
  model: string;
  text?: string[];
  image?: string[];
  input?: string;
  out?: string;
  pooling: 'last' | 'mean';
  template: string;
  instruction: string;
  normalize: boolean;
  batchSize: number;
  maxLength?: number;
  device: string;
}

const IMAGES_LATER = 'image inputs need the MLLM assemblies (not in this build yet); embed texts with --text or --input';

/** Texts of an input file: jsonl rows {text} (a row with an image is refused), or lines of a text file. */
export async function readEmbedInput(file: string): Promise<string[]> {
  let raw: string;
  try {
    raw = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new UnimeError(`cannot read the input file: ${(e as Error).message}`, { file, fix: 'check the --input path' });
  }
  const lines = raw.split(/\r?\n/);
  if (path.extname(file).toLowerCase() !== '.jsonl') return lines.filter((l) => l.trim().length > 0);
  const texts: string[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new UnimeError(`invalid JSON: ${(e as Error).message}`, { file, line: i + 1, fix: 'write one {"text": ...} object a line' });
    }
    const r = row as { text?: unknown; image?: unknown };
    if (r === null || typeof r !== 'object') throw new UnimeError('a row must be an object', { file, line: i + 1, fix: 'write one {"text": ...} object a line' });
    if (r.image !== undefined && r.image !== null) throw new NotImplementedYetError(IMAGES_LATER);
    if (typeof r.text !== 'string') throw new UnimeError('the row has no "text" string', { file, line: i + 1, fix: 'write one {"text": ...} object a line' });
    texts.push(r.text);
  });
  return texts;
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

async function run(args: Args): Promise<void> {
  if ((args.image?.length ?? 0) > 0) throw new NotImplementedYetError(IMAGES_LATER);
  const texts = [...(args.text ?? [])];
  if (args.input !== undefined) texts.push(...(await readEmbedInput(args.input)));
  if (texts.length === 0) throw new UnimeError('nothing to embed', { fix: 'pass --text "..." (repeatable) or --input file.jsonl|file.txt' });
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

  const { initRuntime } = await import('../runtime/index.js');
  const { TextEmbedder } = await import('../models/text-embedder.js');
  const { writeBytesAtomic } = await import('../io/atomic.js');
  await initRuntime({ device: args.device as 'auto' });
  const embedder = await TextEmbedder.load(args.model, {
    pooling: args.pooling,
    normalize: args.normalize,
    template: args.template,
    instruction: args.instruction,
  });
  let emb: Float32Array;
  const t0 = performance.now();
  try {
    emb = await embedder.embed(texts, { batchSize: args.batchSize, maxLength: args.maxLength });
  } finally {
    embedder.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  const d = embedder.dim;
  let bytes: Uint8Array | string;
  if (ext === '.npy') {
    bytes = encodeNpy(emb, [texts.length, d]);
  } else {
    bytes = texts.map((text, i) => JSON.stringify({ text, embedding: Array.from(emb.subarray(i * d, (i + 1) * d)) }) + '\n').join('');
  }
  if (out === undefined) process.stdout.write(bytes);
  else await writeBytesAtomic(path.resolve(out), bytes);
  const rate = seconds > 0 ? texts.length / seconds : Infinity;
  process.stderr.write(`embedded ${texts.length} text${texts.length === 1 ? '' : 's'}, dim ${d}, ${rate.toFixed(1)} embeddings/s${out === undefined ? '' : ` -> ${out}`}\n`);
}

const handle = handler(run);
export { handle as handler };
