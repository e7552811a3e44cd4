/**
 * The synthetic multimodal benchmark, written in MMEB's layouts (see tools/synth/README.md):
 *
 *   node dist/tools/synth/generate.js --out data/synthetic --seed 0 [--size tiny|small|medium]
 *
 *   <out>/text-pairs.jsonl                          stage-1 pairs: sent0, sent1, hard_neg (+ group)
 *   <out>/mmeb-train/<subset>/original-00000-of-00001.parquet   qry, qry_image_path, pos_text, pos_image_path, neg_text, neg_image_path
 *   <out>/mmeb-train/<subset>/synthetic-meta.jsonl  per row: paraphrase group, scenes, candidate kinds
 *   <out>/mmeb-train/images/<subset>/*.png          (paths in the parquet are relative to mmeb-train/)
 *   <out>/mmeb-eval/<dataset>/test-00000-of-00001.parquet       qry_text, qry_img_path, tgt_text[], tgt_img_path[]
 *   <out>/mmeb-eval/<dataset>/synthetic-meta.jsonl
 *   <out>/mmeb-eval/images.zip                      members <dataset>/*.png (paths in the parquet)
 *   <out>/image-text/{train,test}.parquet           CLIP-style pairs: image, caption, neg_caption, long_caption, key, ood (tools/synth/clip.ts)
 *   <out>/image-text/images/{train,test}/*.png      (paths in the parquet are relative to image-text/)
 *   <out>/suites/retrieval/test.jsonl               image, captions (2 paraphrases), over the image-text test images
 *   <out>/suites/zeroshot/<colour>_<shape>/*.png    ImageFolder of 24 classes, + classnames.txt, templates.txt
 *   <out>/suites/sugarcrepe/<subset>.json, images/  the seven SugarCrepe subsets
 *   <out>/manifest.json                             seed, size, datasets with meta-task and IND/OOD, CLIP-side outputs
 *   <out>/models/tiny-mllm/, <out>/models/tiny-teacher/   tiny HF checkpoints (tools/synth/models.ts); --no-models skips them
 *
 * Same seed and size: byte-identical files. Every file is written atomically. Other files under
 * <out> are left alone.
 */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { Rng } from '../../src/runtime/rng.js';
import { writeBytesAtomic } from '../../src/io/atomic.js';
import { UnimeError } from '../../src/errors.js';
import { buildStoredZip, encodePng, type ZipMember } from './encode.js';
import type { Image } from './render.js';
import { HELD_OUT_COMBOS, swapAttribute, allowedIn, randomScene, type Scene, type Split } from './scene.js';
import { PARAPHRASES, pairCaption } from './captions.js';
import { TASKS, TASK_INFO, buildTask, type Example, type TaskName } from './tasks.js';
import { generateModels, type ModelSummary } from './models.js';
import { CLIP_SIZES, IMAGE_TEXT_COLUMNS, ZEROSHOT_TEMPLATES, buildClipData, type ClipSummary } from './clip.js';

export const SIZES = {
  tiny: { trainRows: 12, evalRows: 8, textPairs: 32 },
  small: { trainRows: 300, evalRows: 300, textPairs: 256 },
  medium: { trainRows: 1000, evalRows: 500, textPairs: 4096 },
} as const;
export type SizeName = keyof typeof SIZES;

export const TRAIN_PARQUET = 'original-00000-of-00001.parquet';
export const EVAL_PARQUET = 'test-00000-of-00001.parquet';
export const META_FILE = 'synthetic-meta.jsonl';

export interface GenerateOptions {
  out: string;
  seed: number;
  size: SizeName;
  /** Also write the tiny models under <out>/models/ (default true). They depend on the seed, not the size. */
  models?: boolean;
}

export interface GenerateSummary {
  files: number;
  bytes: number;
  trainSubsets: string[];
  evalDatasets: string[];
  textPairs: number;
  models: ModelSummary[];
  /** Row and image counts of the CLIP-side outputs (image-text/, suites/). */
  clip: ClipSummary;
}

const STRING = { type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' } as const;

function stringColumns(names: readonly string[], rows: readonly Record<string, string>[]): Uint8Array {
  const buf = parquetWriteBuffer({
    columnData: names.map((name) => ({ name, data: rows.map((r) => r[name] as string) })),
    schema: [{ name: 'schema', num_children: names.length }, ...names.map((name) => ({ name, ...STRING }))],
    createdBy: 'unime synthetic generator',
  });
  return new Uint8Array(buf);
}

/** An MMEB-eval parquet: two string columns and two list<string> columns (pyarrow's list layout). */
export function encodeEvalParquet(rows: readonly { qry_text: string; qry_img_path: string; tgt_text: string[]; tgt_img_path: string[] }[]): Uint8Array {
  const list = (name: string) => [
    { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', ...STRING },
  ] as const;
  const buf = parquetWriteBuffer({
    columnData: [
      { name: 'qry_text', data: rows.map((r) => r.qry_text) },
      { name: 'qry_img_path', data: rows.map((r) => r.qry_img_path) },
      { name: 'tgt_text', data: rows.map((r) => r.tgt_text) },
      { name: 'tgt_img_path', data: rows.map((r) => r.tgt_img_path) },
    ],
    schema: [
      { name: 'schema', num_children: 4 },
      { name: 'qry_text', ...STRING },
      { name: 'qry_img_path', ...STRING },
      ...list('tgt_text'),
      ...list('tgt_img_path'),
    ],
    createdBy: 'unime synthetic generator',
  });
  return new Uint8Array(buf);
}

export const TRAIN_COLUMNS = ['qry', 'qry_image_path', 'pos_text', 'pos_image_path', 'neg_text', 'neg_image_path'] as const;

export function encodeTrainParquet(rows: readonly Record<(typeof TRAIN_COLUMNS)[number], string>[]): Uint8Array {
  return stringColumns(TRAIN_COLUMNS, rows);
}

function metaLine(row: number, ex: Example): string {
  return JSON.stringify({
    row,
    group: ex.group,
    template: ex.template ?? null,
    ...(ex.queryKind !== undefined ? { query_kind: ex.queryKind } : {}),
    query_scene: ex.queryScene,
    candidates: ex.candidates.map((c) => c.meta),
  });
}

function jsonl(lines: string[]): string {
  return lines.map((l) => l + '\n').join('');
}

/** The stage-1 text pairs: two paraphrases of one scene caption, and a swapped-attribute/relation caption. */
export function buildTextPairs(rng: Rng, n: number): { sent0: string; sent1: string; hard_neg: string; group: number; kind: string }[] {
  const out: { sent0: string; sent1: string; hard_neg: string; group: number; kind: string }[] = [];
  const scenes: { scene: Scene; group: number }[] = [];
  for (let i = 0; i < n; i++) {
    let base: { scene: Scene; group: number };
    if (scenes.length > 0 && rng.uniform() < 0.2) base = scenes[scenes.length - 1 - rng.int(Math.min(8, scenes.length))] as { scene: Scene; group: number };
    else {
      base = { scene: randomScene(rng, 'ind', 2 + rng.int(3)), group: i };
      scenes.push(base);
    }
    const t0 = rng.int(PARAPHRASES);
    const t1 = (t0 + 1 + rng.int(PARAPHRASES - 1)) % PARAPHRASES;
    const kinds = (['colour', 'shape', 'cell'] as const).filter((f) => allowedIn(swapAttribute(base.scene, 0, 1, f), 'ind'));
    const f = kinds[rng.int(kinds.length)] as 'colour' | 'shape' | 'cell';
    out.push({
      sent0: pairCaption(base.scene, t0),
      sent1: pairCaption(base.scene, t1),
      hard_neg: pairCaption(swapAttribute(base.scene, 0, 1, f), t0),
      group: base.group,
      kind: f === 'cell' ? 'swap-relation' : `swap-${f}`,
    });
  }
  return out;
}

function toRows(ex: readonly Example[]) {
  return ex.map((e) => ({
    qry_text: e.queryText,
    qry_img_path: e.queryImage,
    tgt_text: e.candidates.map((c) => c.text),
    tgt_img_path: e.candidates.map((c) => c.image),
  }));
}

export async function generateSynthetic(options: GenerateOptions): Promise<GenerateSummary> {
  const size = SIZES[options.size];
  if (!size) throw new UnimeError(`unknown size "${options.size}"`, { fix: `use one of ${Object.keys(SIZES).join(', ')}` });
  const root = new Rng(options.seed);
  const files: { path: string; data: string | Uint8Array }[] = [];
  const trainRoot = path.join(options.out, 'mmeb-train');
  const evalRoot = path.join(options.out, 'mmeb-eval');

  // Training subsets: IND scenes only; images as files under mmeb-train/images/<subset>/.
  for (const task of TASKS) {
    const put = (name: string, img: Image) => {
      const rel = `images/${task}/${name}`;
      files.push({ path: path.join(trainRoot, rel), data: encodePng(img.width, img.height, img.data) });
      return rel;
    };
    const ex = buildTask(task, { rng: root.fork(`train:${task}`), split: 'ind', put, train: true }, size.trainRows);
    const rows = ex.map((e) => {
      const pos = e.candidates[0]!, neg = e.candidates[1]!;
      return { qry: e.queryText, qry_image_path: e.queryImage, pos_text: pos.text, pos_image_path: pos.image, neg_text: neg.text, neg_image_path: neg.image };
    });
    files.push({ path: path.join(trainRoot, task, TRAIN_PARQUET), data: encodeTrainParquet(rows) });
    files.push({ path: path.join(trainRoot, task, META_FILE), data: jsonl(ex.map((e, i) => metaLine(i, e))) });
  }

  // Evaluation datasets: IND and OOD twins; images in one images.zip.
  const zipMembers: ZipMember[] = [];
  const evalDatasets: { name: string; task: TaskName; split: Split }[] = [];
  for (const split of ['ind', 'ood'] as const) {
    for (const task of TASKS) {
      const name = split === 'ind' ? task : `${task}-OOD`;
      evalDatasets.push({ name, task, split });
      const put = (file: string, img: Image) => {
        const rel = `${name}/${file}`;
        zipMembers.push({ name: rel, data: encodePng(img.width, img.height, img.data) });
        return rel;
      };
      const ex = buildTask(task, { rng: root.fork(`eval:${name}`), split, put, train: false }, size.evalRows);
      files.push({ path: path.join(evalRoot, name, EVAL_PARQUET), data: encodeEvalParquet(toRows(ex)) });
      files.push({ path: path.join(evalRoot, name, META_FILE), data: jsonl(ex.map((e, i) => metaLine(i, e))) });
    }
  }
  files.push({ path: path.join(evalRoot, 'images.zip'), data: buildStoredZip(zipMembers) });

  const pairs = buildTextPairs(root.fork('text-pairs'), size.textPairs);
  files.push({ path: path.join(options.out, 'text-pairs.jsonl'), data: jsonl(pairs.map((p) => JSON.stringify(p))) });

  // CLIP-side data: image-caption pairs and the retrieval / zero-shot / SugarCrepe suites.
  const clip = buildClipData(
    {
      train: root.fork('image-text:train'),
      test: root.fork('image-text:test'),
      negatives: root.fork('image-text:negatives'),
      single: root.fork('image-text:single'),
      retrieval: root.fork('suites:retrieval'),
      zeroshot: root.fork('suites:zeroshot'),
      sugarcrepe: root.fork('suites:sugarcrepe'),
    },
    CLIP_SIZES[options.size],
  );
  for (const f of clip.files) files.push({ path: path.join(options.out, f.path), data: f.data });
  const cs = clip.summary;

  const manifest = {
    generator: 'tools/synth/generate.ts',
    seed: options.seed,
    size: options.size,
    held_out_combos: HELD_OUT_COMBOS.map(([c, s]) => `${c} ${s}`),
    text_pairs: { path: 'text-pairs.jsonl', rows: pairs.length },
    train: TASKS.map((t) => ({ subset: t, rows: size.trainRows, meta_task: TASK_INFO[t].metaTask, mmeb_analogue: TASK_INFO[t].mmebAnalogue })),
    eval: evalDatasets.map((d) => ({
      dataset: d.name,
      rows: size.evalRows,
      meta_task: TASK_INFO[d.task].metaTask,
      distribution: d.split === 'ind' ? 'IND' : 'OOD',
      mmeb_analogue: TASK_INFO[d.task].mmebAnalogue,
    })),
    image_text: {
      columns: [...IMAGE_TEXT_COLUMNS],
      train: { path: 'image-text/train.parquet', images: 'image-text/images/train', rows: cs.train, ood_rows: 0 },
      test: { path: 'image-text/test.parquet', images: 'image-text/images/test', rows: cs.test, ood_rows: cs.testOod },
    },
    suites: {
      retrieval: { path: 'suites/retrieval/test.jsonl', images: cs.retrievalImages, captions: cs.retrievalCaptions },
      zeroshot: {
        path: 'suites/zeroshot',
        classnames: 'suites/zeroshot/classnames.txt',
        templates: 'suites/zeroshot/templates.txt',
        classes: cs.zeroshotClasses,
        images: cs.zeroshotImages,
        template_count: ZEROSHOT_TEMPLATES.length,
        held_out_classes: cs.heldOutClasses,
      },
      sugarcrepe: { path: 'suites/sugarcrepe', images: 'suites/sugarcrepe/images', image_count: cs.sugarcrepeImages, subsets: cs.sugarcrepe },
    },
  };
  files.push({ path: path.join(options.out, 'manifest.json'), data: JSON.stringify(manifest, null, 2) + '\n' });

  // Write with bounded concurrency; each file atomically.
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const f = files[next++]!;
      await writeBytesAtomic(f.path, f.data);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const models = options.models === false ? [] : await generateModels(options.out, options.seed);
  const bytes = files.reduce((s, f) => s + (typeof f.data === 'string' ? Buffer.byteLength(f.data) : f.data.byteLength), 0) + models.reduce((s, m) => s + m.bytes, 0);
  const nFiles = files.length + models.reduce((s, m) => s + m.files, 0);
  return { files: nFiles, bytes, trainSubsets: [...TASKS], evalDatasets: evalDatasets.map((d) => d.name), textPairs: pairs.length, models, clip: cs };
}

function parseArgs(argv: readonly string[]): GenerateOptions {
  const opts: GenerateOptions = { out: 'data/synthetic', seed: 0, size: 'small', models: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [key, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UnimeError(`${key} needs a value`);
      return v;
    };
    if (key === '--out') opts.out = value();
    else if (key === '--seed') {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n)) throw new UnimeError(`--seed must be an integer, got "${v}"`);
      opts.seed = n;
    } else if (key === '--size') {
      const v = value();
      if (!(v in SIZES)) throw new UnimeError(`--size must be one of ${Object.keys(SIZES).join(', ')}, got "${v}"`);
      opts.size = v as SizeName;
    } else if (key === '--no-models') opts.models = false;
    else if (key === '--models') opts.models = true;
    else if (key === '--help' || key === '-h') {
      process.stdout.write('usage: node dist/tools/synth/generate.js [--out data/synthetic] [--seed 0] [--size tiny|small|medium] [--no-models]\n');
      process.exit(0);
    } else throw new UnimeError(`unknown argument "${a}"`, { fix: 'see --help' });
  }
  return opts;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (isMain) {
  try {
    const opts = parseArgs(process.argv.slice(2));
    const t0 = performance.now();
    const s = await generateSynthetic(opts);
    const ms = performance.now() - t0;
    process.stdout.write(
      `wrote ${s.files} files (${(s.bytes / 1024).toFixed(0)} KiB) to ${opts.out} in ${(ms / 1000).toFixed(2)} s: ` +
        `${s.textPairs} text pairs, ${s.trainSubsets.length} train subsets, ${s.evalDatasets.length} eval datasets, ` +
        `image-text ${s.clip.train}/${s.clip.test} (${s.clip.testOod} OOD), suites retrieval/zeroshot/sugarcrepe` +
        (s.models.length > 0 ? `, models ${s.models.map((m) => `${path.basename(m.dir)} (${(m.parameters / 1e6).toFixed(2)}M parameters)`).join(', ')}` : '') +
        '\n',
    );
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
