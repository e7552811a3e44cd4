/**
 * The non-MMEB suites end to end: caption retrieval, SugarCrepe and zero-shot classification, each
 * read from its public format in a local folder (./retrieval.ts, ./sugarcrepe.ts, ./zeroshot.ts),
 * embedded through the same embedding cache and lazy model loading as MMEB (./embed-cache.ts,
 * ./mmeb-eval.ts's EvalModel), scored by the suite's pure functions and written out as
 *
 *   <suite>.json       the scores, the settings (prompts, templates) and timings
 *   <suite>-report.md  the table
 *
 * Both `unime eval retrieval|sugarcrepe|zeroshot` and the `eval` stage run this.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { writeBytesAtomic, writeJsonAtomic } from '../io/atomic.js';
import { formatScore } from './aggregate.js';
import { readJsonFile } from './annotations.js';
import { EmbeddingCache, imageDigest, inputKey, type ModelIdentity } from './embed-cache.js';
import { EvalInterrupted, ModelLoadFailed, type EvalLog, type EvalModel, type ModelInput } from './mmeb-eval.js';
import { escapeMarkdown } from './report.js';
import { RETRIEVAL_KS, readRetrievalData, retrievalRanks, retrievalScoresFromRanks, type RetrievalData } from './retrieval.js';
import { embeddingMatrix, type EmbeddingMatrix } from './scoring.js';
import { readSugarcrepe, sugarcrepeCorrect, type SugarcrepeData } from './sugarcrepe.js';
import { bitString, bootstrapIntervals, observedMeans, parseBits, percentOf, rowHitsString, sameScores, type BootstrapOptions, type Interval } from './significance.js';
import { DEFAULT_TEMPLATES, classEmbeddings, fillTemplate, readTemplates, readZeroshotData, zeroshotRanks, zeroshotScoresFromRanks, type ZeroshotData } from './zeroshot.js';

export const OTHER_SUITES = ['retrieval', 'sugarcrepe', 'zeroshot'] as const;
export type OtherSuite = (typeof OTHER_SUITES)[number];

/** UniME's prompts: an image, or a sentence in place of `<sent>`, summarised in one word. */
export const DEFAULT_IMAGE_PROMPT = '<image>\nSummary above image in one word:';
export const DEFAULT_TEXT_PROMPT = '<sent>\nSummary above sentence in one word:';
export const SENTENCE_SLOT = '<sent>';

export interface SuiteDataOptions {
  /** SugarCrepe: the COCO val2017 folder (default: images/ or val2017/ beside the subset files). Retrieval: the folder image paths are relative to. */
  images?: string;
  /** Zero-shot: class names file. */
  classNames?: string;
  /** Zero-shot: templates file (default: {@link DEFAULT_TEMPLATES}). */
  templates?: string;
  /** SugarCrepe: only these subsets (default all 7). */
  subsets?: readonly string[];
  /** Names the data option in errors: '--data' or 'stages[i].data.root'. */
  field?: string;
}

export type SuiteData =
  | { suite: 'retrieval'; retrieval: RetrievalData }
  | { suite: 'sugarcrepe'; sugarcrepe: SugarcrepeData }
  | { suite: 'zeroshot'; zeroshot: ZeroshotData; templates: string[] };

/** Read and check a suite's data (cheap; run before the model loads). */
export async function readSuiteData(suite: OtherSuite, dataPath: string, o: SuiteDataOptions = {}): Promise<SuiteData> {
  const field = o.field ?? '--data';
  if (suite === 'retrieval') return { suite, retrieval: await readRetrievalData(dataPath, { field, ...(o.images ? { imageRoot: path.resolve(o.images) } : {}) }) };
  if (suite === 'sugarcrepe') {
    const imagesField = field.endsWith('.root') ? field.replace(/\.root$/, '.images') : '--images';
    return { suite, sugarcrepe: await readSugarcrepe(dataPath, { field, imagesField, ...(o.images ? { imageDir: o.images } : {}), ...(o.subsets ? { subsets: o.subsets } : {}) }) };
  }
  const templates = o.templates ? await readTemplates(o.templates) : [...DEFAULT_TEMPLATES];
  return { suite, zeroshot: await readZeroshotData(dataPath, { field, ...(o.classNames ? { classNames: o.classNames } : {}) }), templates };
}

/** One input: a text and an image file (or none). */
export interface SuiteItem {
  text: string;
  image: string | null;
}

/**
 * Embeds lists of items through the cache: an input already cached (same text, same image bytes) is
 * not embedded again, repeats within a list are embedded once, and the model loads on the first miss.
 */
export class CachedEmbedder {
  embedded = 0;
  cached = 0;
  modelSeconds = 0;
  private model: EvalModel | null = null;
  private loading: Promise<EvalModel> | null = null;

  constructor(
    private readonly cache: EmbeddingCache,
    private readonly o: { loadModel: () => Promise<EvalModel>; modelName: string; batchSize: number; maxLength: number; log: EvalLog; progressEverySeconds?: number; signal?: AbortSignal },
  ) {}

  private async getModel(): Promise<EvalModel> {
    if (this.model) return this.model;
    this.loading ??= (async () => {
      const t = performance.now();
      this.o.log.info(`eval: loading ${this.o.modelName}`);
      try {
        const m = await this.o.loadModel();
        this.o.log.info(`eval: model loaded in ${((performance.now() - t) / 1000).toFixed(1)} s (dim ${m.dim})`);
        return m;
      } catch (e) {
        throw e instanceof UnimeError ? new ModelLoadFailed(e) : e;
      }
    })();
    this.model = await this.loading;
    return this.model;
  }

  /** Embeddings of `items` in order, [items.length, dim]. `label` names the list in progress lines. */
  async embed(items: readonly SuiteItem[], label: string): Promise<EmbeddingMatrix> {
    const keys: string[] = new Array(items.length);
    const bytesCache = new Map<string, Uint8Array>();
    const readImage = async (p: string): Promise<Uint8Array> => {
      let b = bytesCache.get(p);
      if (!b) {
        try {
          b = new Uint8Array(await fsp.readFile(p));
        } catch (e) {
          throw new UnimeError(`cannot read image: ${(e as Error).message}`, { file: p });
        }
        // Only the digest is kept for long: the bytes are reread for the batch that embeds them.
        if (bytesCache.size > 64) bytesCache.clear();
        bytesCache.set(p, b);
      }
      return b;
    };
    const digests = new Map<string, string>();
    for (const [i, it] of items.entries()) {
      let d: string | null = null;
      if (it.image) {
        d = digests.get(it.image) ?? imageDigest(await readImage(it.image));
        digests.set(it.image, d);
      }
      keys[i] = inputKey(it.text, d);
    }
    const vectors: (Float32Array | undefined)[] = keys.map((k) => this.cache.get(k));
    const missing: number[] = [];
    const seen = new Set<string>();
    vectors.forEach((v, i) => {
      if (v || seen.has(keys[i]!)) return;
      seen.add(keys[i]!);
      missing.push(i);
    });
    this.cached += items.length - missing.length;
    const every = (this.o.progressEverySeconds ?? 10) * 1000;
    let last = performance.now();
    const t0 = last;
    for (let s = 0; s < missing.length; s += this.o.batchSize) {
      if (this.o.signal?.aborted) throw new EvalInterrupted();
      const idx = missing.slice(s, s + this.o.batchSize);
      const inputs: ModelInput[] = [];
      for (const i of idx) inputs.push({ text: items[i]!.text, image: items[i]!.image ? await readImage(items[i]!.image!) : null });
      const m = await this.getModel();
      const ts = performance.now();
      const out = await m.embed(inputs, { batchSize: this.o.batchSize, maxLength: this.o.maxLength });
      this.modelSeconds += (performance.now() - ts) / 1000;
      const dim = out.length / idx.length;
      if (!Number.isInteger(dim) || dim < 1) throw new UnimeError(`the model returned ${out.length} values for ${idx.length} inputs`, { fix: 'the model must return one embedding per input' });
      for (const [j, i] of idx.entries()) await this.cache.put(keys[i]!, out.subarray(j * dim, (j + 1) * dim));
      this.embedded += idx.length;
      const now = performance.now();
      const done = Math.min(s + this.o.batchSize, missing.length);
      if (now - last >= every && done < missing.length) {
        last = now;
        const r = done / ((now - t0) / 1000);
        this.o.log.info(`eval: ${label} ${done}/${missing.length} embedded (${items.length - missing.length} cached), ${r.toFixed(1)} emb/s, ETA ${Math.round((missing.length - done) / r)} s`);
      }
    }
    const dim = this.cache.dim ?? this.model?.dim;
    if (dim === undefined || dim === null) throw new UnimeError(`nothing to embed for ${label}`);
    const data = new Float32Array(items.length * dim);
    keys.forEach((k, i) => {
      const v = this.cache.get(k);
      if (!v) throw new Error(`eval: ${k} missing from the cache after embedding`);
      data.set(v, i * dim);
    });
    this.o.log.info(`eval: ${label}: ${items.length} inputs (${missing.length} embedded, ${items.length - missing.length} cached)`);
    return embeddingMatrix(data, items.length, dim, label);
  }

  dispose(): void {
    this.model?.dispose();
  }
}

export interface SuiteEvalOptions {
  data: SuiteData;
  /** The data path as given (for the report). */
  dataPath: string;
  outDir: string;
  modelName: string;
  loadModel: () => Promise<EvalModel>;
  /** Cache root, or null for an in-memory cache. */
  cacheDir: string | null;
  identity?: ModelIdentity;
  batchSize?: number;
  maxLength?: number;
  imagePrompt?: string;
  textPrompt?: string;
  log: EvalLog;
  progressEverySeconds?: number;
  metadata?: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface SuiteEvalOutcome {
  suite: OtherSuite;
  /** The headline number: mean recall, mean accuracy, top-1 (percent). */
  score: number;
  /** What <suite>.json holds. */
  result: Record<string, unknown>;
  embedded: number;
  cached: number;
  seconds: number;
  embeddings_per_second: number | null;
  files: { result: string; markdown: string };
  /** The plain-text table printed at the end. */
  table: string;
}

function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function markdownTable(header: string[], rows: string[][]): string {
  const esc = (s: string) => escapeMarkdown(s);
  return [`| ${header.map(esc).join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

export function textPrompted(prompt: string, sentence: string): string {
  return prompt.split(SENTENCE_SLOT).join(sentence);
}

export async function runSuiteEval(o: SuiteEvalOptions): Promise<SuiteEvalOutcome> {
  const t0 = performance.now();
  const batchSize = o.batchSize ?? 16;
  const maxLength = o.maxLength ?? 256;
  const imagePrompt = o.imagePrompt ?? DEFAULT_IMAGE_PROMPT;
  const textPrompt = o.textPrompt ?? DEFAULT_TEXT_PROMPT;
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new UnimeError(`batch size must be a positive whole number, got ${batchSize}`, { field: 'batch_size' });
  if (!(Number.isInteger(maxLength) && maxLength > 0)) throw new UnimeError(`max length must be a positive whole number, got ${maxLength}`, { field: 'max_length' });
  if (!textPrompt.includes(SENTENCE_SLOT)) throw new UnimeError(`has no ${SENTENCE_SLOT} where the text goes: ${JSON.stringify(textPrompt)}`, { field: 'text_prompt', fix: `e.g. "${DEFAULT_TEXT_PROMPT.replace('\n', '\\n')}"` });
  const suite = o.data.suite;

  let cache: EmbeddingCache;
  if (o.cacheDir !== null) {
    if (!o.identity) throw new Error('runSuiteEval: a cacheDir needs the model identity');
    cache = await EmbeddingCache.open(o.cacheDir, o.identity, { log: o.log });
    o.log.info(`eval: embedding cache ${cache.dir} (${cache.size} entries)`);
  } else cache = EmbeddingCache.inMemory();
  const emb = new CachedEmbedder(cache, { loadModel: o.loadModel, modelName: o.modelName, batchSize, maxLength, log: o.log, ...(o.progressEverySeconds !== undefined ? { progressEverySeconds: o.progressEverySeconds } : {}), ...(o.signal ? { signal: o.signal } : {}) });
  const image = (p: string): SuiteItem => ({ text: imagePrompt, image: p });
  const text = (s: string): SuiteItem => ({ text: textPrompted(textPrompt, s), image: null });

  let score: number;
  let scores: Record<string, unknown>;
  let header: string[];
  let rows: string[][];
  const settings: Record<string, unknown> = { image_prompt: imagePrompt, text_prompt: textPrompt, batch_size: batchSize, max_length: maxLength, tie_rule: 'pessimistic' };
  try {
    if (o.data.suite === 'retrieval') {
      const d = o.data.retrieval;
      o.log.info(`eval: retrieval: ${d.images.length} images, ${d.captions.length} captions from ${d.file} (${d.format})`);
      const im = await emb.embed(d.images.map(image), 'images');
      const tx = await emb.embed(d.captions.map(text), 'captions');
      const ranks = retrievalRanks(im, tx, d.captionImage);
      const s = retrievalScoresFromRanks(ranks, im.rows, tx.rows);
      score = s.mean;
      // per image (i2t) and per caption (t2i): whether the match ranked within k, for the run report's intervals
      const rowHits = Object.fromEntries(
        (['i2t', 't2i'] as const).flatMap((dir) => RETRIEVAL_KS.map((k) => [`${dir}_r${k}`, rowHitsString(ranks[dir], k)])),
      );
      scores = { ...s, annotations: d.file, format: d.format, row_hits: rowHits };
      header = ['Direction', 'R@1', 'R@5', 'R@10'];
      rows = [
        ['image-to-text', formatScore(s.i2t_r1), formatScore(s.i2t_r5), formatScore(s.i2t_r10)],
        ['text-to-image', formatScore(s.t2i_r1), formatScore(s.t2i_r5), formatScore(s.t2i_r10)],
        ['mean of the six recalls', formatScore(s.mean), '', ''],
      ];
    } else if (o.data.suite === 'sugarcrepe') {
      const d = o.data.sugarcrepe;
      const subsets: Record<string, { accuracy: number; samples: number; row_hits: string }> = {};
      for (const sub of d.subsets) {
        o.log.info(`eval: sugarcrepe ${sub.name}: ${sub.samples.length} samples`);
        const im = await emb.embed(sub.samples.map((x) => image(x.image)), `${sub.name} images`);
        const pos = await emb.embed(sub.samples.map((x) => text(x.caption)), `${sub.name} captions`);
        const neg = await emb.embed(sub.samples.map((x) => text(x.negative)), `${sub.name} negatives`);
        const right = sugarcrepeCorrect(im, pos, neg, `sugarcrepe ${sub.name}`);
        subsets[sub.name] = { accuracy: percentOf(right), samples: sub.samples.length, row_hits: bitString(right) };
      }
      const accs = Object.values(subsets).map((s) => s.accuracy);
      score = accs.reduce((a, b) => a + b, 0) / accs.length;
      scores = { subsets, mean: score, complete: d.missing.length === 0, missing: d.missing, data_dir: d.dir, image_dir: d.imageDir };
      header = ['Subset', 'Accuracy', 'Samples'];
      rows = Object.entries(subsets).map(([n, s]) => [n, formatScore(s.accuracy), String(s.samples)]);
      for (const m of d.missing) rows.push([m, 'missing', '']);
      rows.push([`mean (${accs.length} subset${accs.length === 1 ? '' : 's'}${d.missing.length ? ', incomplete' : ''})`, formatScore(score), '']);
    } else {
      const d = o.data.zeroshot;
      const templates = o.data.templates;
      settings.templates = templates;
      o.log.info(`eval: zeroshot: ${d.images.length} images, ${d.classNames.length} classes x ${templates.length} templates from ${d.source} (${d.format})`);
      const prompts = d.classNames.flatMap((c) => templates.map((t) => text(fillTemplate(t, c))));
      const classes = classEmbeddings(await emb.embed(prompts, 'class prompts'), d.classNames.length, templates.length);
      const im = await emb.embed(d.images.map(image), 'images');
      const ranks = zeroshotRanks(im, classes, d.labels);
      const s = zeroshotScoresFromRanks(ranks, d.labels, classes.rows, d.classNames);
      score = s.top1;
      scores = { ...s, class_names: d.classNames, source: d.source, format: d.format, row_hits: { top1: rowHitsString(ranks, 1), top5: rowHitsString(ranks, 5) } };
      header = ['Metric', 'Accuracy'];
      rows = [
        ['top-1', formatScore(s.top1)],
        ['top-5', formatScore(s.top5)],
        ['images / classes', `${s.images} / ${s.classes}`],
      ];
    }
  } finally {
    await cache.flush().catch((e) => o.log.warn(`eval: could not write the embedding cache: ${(e as Error).message}`));
    emb.dispose();
  }

  const seconds = (performance.now() - t0) / 1000;
  const eps = emb.embedded > 0 && emb.modelSeconds > 0 ? emb.embedded / emb.modelSeconds : null;
  const result: Record<string, unknown> = {
    suite,
    model: o.modelName,
    unit: 'percent',
    score,
    scores,
    settings,
    metadata: { ...o.metadata, data: path.resolve(o.dataPath), report_generated_date: new Date().toISOString() },
    embedded: emb.embedded,
    cached: emb.cached,
    seconds,
    model_seconds: emb.modelSeconds,
    embeddings_per_second: eps,
  };
  const files = { result: path.join(o.outDir, `${suite}.json`), markdown: path.join(o.outDir, `${suite}-report.md`) };
  const title = `${suite} results: ${o.modelName} (percent)`;
  await writeJsonAtomic(files.result, result);
  await writeBytesAtomic(files.markdown, `# ${escapeMarkdown(title)}\n\n${markdownTable(header, rows)}\n\nData: \`${path.resolve(o.dataPath)}\`\n`);
  return {
    suite,
    score,
    result,
    embedded: emb.embedded,
    cached: emb.cached,
    seconds,
    embeddings_per_second: eps,
    files,
    table: `${title}\n${textTable(header, rows)}\n`,
  };
}

/** One headline number of a suite result, for tables that put several results side by side. */
export interface SuiteMetric {
  label: string;
  /** Percent. */
  value: number;
}

/** A `<suite>.json` read back: which suite, which model, and its headline numbers in report order. */
export interface SuiteResultSummary {
  suite: OtherSuite;
  model: string;
  metrics: SuiteMetric[];
  /**
   * The per-row outcomes behind the metrics, when the file has them and they reproduce its numbers:
   * groups of rows (retrieval: images, captions; SugarCrepe: each subset; zero-shot: the images), per
   * group one 0/1 array per measure, and how the measures' means (0..1) give `metrics`, in order.
   */
  rows?: { strata: Uint8Array[][]; derive: (means: readonly Float64Array[]) => number[] };
}

/** Read a `<suite>.json` that runSuiteEval wrote. Errors name the file and the field. */
export async function readSuiteResult(file: string): Promise<SuiteResultSummary> {
  return parseSuiteResult(await readJsonFile(file), file);
}

export function parseSuiteResult(value: unknown, file = '(suite result)'): SuiteResultSummary {
  const fix = 'run the eval stage again to rewrite it';
  const obj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!obj(value)) throw new UnimeError('expected an object', { file, field: '(top level)', fix });
  const suite = value.suite;
  if (typeof suite !== 'string' || !(OTHER_SUITES as readonly string[]).includes(suite)) {
    throw new UnimeError(`suite must be one of ${OTHER_SUITES.join(', ')}, got ${JSON.stringify(suite)}`, { file, field: 'suite', fix });
  }
  const scores = value.scores;
  if (!obj(scores)) throw new UnimeError('missing or not an object', { file, field: 'scores', fix });
  const num = (v: unknown, field: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new UnimeError(`expected a number, got ${JSON.stringify(v)}`, { file, field, fix });
    return v;
  };
  const metrics: SuiteMetric[] = [];
  const hits = obj(scores.row_hits) ? scores.row_hits : {};
  const pct = (x: number) => 100 * x;
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  let strata: (Uint8Array | null)[][];
  let derive: (means: readonly Float64Array[]) => number[];
  if (suite === 'retrieval') {
    for (const [dir, name] of [['i2t', 'image-to-text'], ['t2i', 'text-to-image']] as const) {
      for (const k of RETRIEVAL_KS) metrics.push({ label: `${name} R@${k}`, value: num(scores[`${dir}_r${k}`], `scores.${dir}_r${k}`) });
    }
    metrics.push({ label: 'mean of the six recalls', value: num(scores.mean, 'scores.mean') });
    strata = (['i2t', 't2i'] as const).map((dir) => RETRIEVAL_KS.map((k) => parseBits(hits[`${dir}_r${k}`])));
    derive = (m) => {
      const six = [...m[0]!, ...m[1]!].map(pct);
      return [...six, mean(six)];
    };
  } else if (suite === 'sugarcrepe') {
    const subsets = scores.subsets;
    if (!obj(subsets)) throw new UnimeError('missing or not an object', { file, field: 'scores.subsets', fix });
    for (const [name, s] of Object.entries(subsets)) {
      metrics.push({ label: name, value: num(obj(s) ? s.accuracy : undefined, `scores.subsets.${name}.accuracy`) });
    }
    metrics.push({ label: `mean of ${metrics.length} subsets`, value: num(scores.mean, 'scores.mean') });
    strata = Object.values(subsets).map((s) => [parseBits(obj(s) ? s.row_hits : undefined)]);
    derive = (m) => {
      const accs = m.map((x) => pct(x[0]!));
      return [...accs, mean(accs)];
    };
  } else {
    metrics.push({ label: 'top-1', value: num(scores.top1, 'scores.top1') }, { label: 'top-5', value: num(scores.top5, 'scores.top5') });
    strata = [[parseBits(hits.top1), parseBits(hits.top5)]];
    derive = (m) => [...m[0]!].map(pct);
  }
  const out: SuiteResultSummary = { suite: suite as OtherSuite, model: typeof value.model === 'string' ? value.model : '(unnamed model)', metrics };
  const complete = strata.every((g) => g.every((m) => m !== null) && g.every((m) => m!.length === g[0]!.length));
  if (complete) {
    const full = strata as Uint8Array[][];
    if (sameScores(derive(observedMeans(full)), metrics.map((m) => m.value))) out.rows = { strata: full, derive };
  }
  return out;
}

/**
 * Paired bootstrap intervals of `candidate - baseline` per metric label (as significance.ts does for
 * MMEB), or null unless both results carry row outcomes over the same rows. Retrieval's images and
 * captions are resampled as two separate groups (a caption's image is not drawn with it).
 */
export function suiteDeltaIntervals(baseline: SuiteResultSummary, candidate: SuiteResultSummary, options: BootstrapOptions = {}): { level: number; resamples: number; intervals: Map<string, Interval> } | null {
  const b = baseline.rows;
  const c = candidate.rows;
  if (!b || !c || baseline.suite !== candidate.suite) return null;
  const labels = baseline.metrics.map((m) => m.label);
  if (labels.join('\n') !== candidate.metrics.map((m) => m.label).join('\n')) return null;
  const sameShape = b.strata.length === c.strata.length && b.strata.every((g, i) => g.length === c.strata[i]!.length && g[0]!.length === c.strata[i]![0]!.length);
  if (!sameShape) return null;
  return bootstrapIntervals(
    b.strata.map((g, i) => ({ baseline: g, candidate: c.strata[i]! })),
    (bm, cm) => {
      const x = b.derive(bm);
      const y = c.derive(cm);
      return new Map(labels.map((l, i) => [l, y[i]! - x[i]!]));
    },
    options,
  );
}

/**
 * A `<suite>.json` read back, or null when the file is not one (no `suite` field: an MMEB result, say,
 * or JSON that does not parse, which the MMEB reader then reports).
 */
export async function readSuiteResultIfAny(file: string): Promise<SuiteResultSummary | null> {
  const value = await readJsonFile(file).catch(() => null);
  if (typeof value !== 'object' || value === null || !('suite' in value)) return null;
  return parseSuiteResult(value, file);
}
