import type { Argv } from 'yargs';
import * as path from 'node:path';
import { handler as wrap } from './common.js';
import { averageSummaries, readMmebReport, summarizeMmeb, MMEB_MAIN_METRIC, type MmebSummary } from '../eval/aggregate.js';
import type { RowHits } from '../eval/significance.js';
import { markdownReport, comparisonMarkdown, escapeHtml, escapeMarkdown, htmlPage, writeResultReports, writeComparisonReports, type ComparisonEntry } from '../eval/report.js';
import { suiteComparison, suiteComparisonHtml, suiteComparisonMarkdown } from '../eval/suite-compare.js';
import { writeBytesAtomic } from '../io/atomic.js';
import { readSummaryExtras } from '../eval/run-report.js';
import { UnimeError } from '../errors.js';
import { EvalInterrupted, failedDatasetsError, runMmebEval, RESULT_FILE, SUMMARY_FILE } from '../eval/mmeb-eval.js';
import { OTHER_SUITES, readSuiteResultIfAny, type OtherSuite } from '../eval/suite-eval.js';

export const SUITES = ['mmeb', 'retrieval', 'sugarcrepe', 'zeroshot'] as const;

export const command = 'eval';
export const describe = 'Evaluate a model on MMEB or another suite; summarize and compare results';

const SUITE_DATA: Record<OtherSuite, string> = {
  retrieval: 'image-caption annotations: a jsonl/csv (image, caption or captions; paths relative to it), a Karpathy-split JSON (split "test"), or a folder holding one',
  sugarcrepe: 'folder with the 7 SugarCrepe subset files (add_att.json, ...); images from --images or an images/ or val2017/ folder beside them',
  zeroshot: 'ImageFolder root (<root>/<class>/<images>) or a jsonl/csv of image,label',
};

function suiteBuilder(suite: OtherSuite) {
  return (y: Argv) => {
    let b = y
      .option('model', { type: 'string', describe: 'checkpoint directory or Hub id', demandOption: true })
      .option('adapter', { type: 'string', array: true, describe: 'LoRA adapter dir, or a training stage output dir (its whole adapter chain); repeatable, merged in order' })
      .option('data', { type: 'string', describe: SUITE_DATA[suite], demandOption: true })
      .option('out', { type: 'string', describe: `folder for ${suite}.json and ${suite}-report.md (default eval-results/<model>)` })
      .option('cache', { type: 'string', describe: 'embedding cache folder (default <out>/embed-cache). --no-cache: keep embeddings in memory only' })
      .option('batch-size', { type: 'number', default: 16 })
      .option('max-length', { type: 'number', default: 256, describe: 'truncate inputs to this many tokens' })
      .option('image-size', { type: 'number', describe: "refuse to run unless the model's image size is this (default: the model's own)" })
      .option('image-prompt', { type: 'string', describe: "text of an image input (<image> marks the image; the model rewrites it; \\n = newline); default UniME's, or none for a clip-train model" })
      .option('text-prompt', { type: 'string', describe: "text of a text input, <sent> standing for the caption (\\n = newline); default UniME's, or the bare caption for a clip-train model" })
      .option('progress-every', { type: 'number', default: 10, describe: 'seconds between progress lines' })
      .option('device', { type: 'string', choices: ['auto', 'cpu', 'native', 'cuda'], default: 'auto' });
    if (suite === 'sugarcrepe') b = b.option('subsets', { type: 'string', array: true, describe: 'only these subsets (comma-separated or repeated; default all 7)' });
    if (suite !== 'zeroshot') b = b.option('images', { type: 'string', describe: suite === 'sugarcrepe' ? 'the COCO val2017 image folder' : 'folder that image paths are relative to (default: the annotation file\'s)' });
    if (suite === 'zeroshot') {
      b = b
        .option('classnames', { type: 'string', describe: 'class names: one per line (sorted class-folder order, or indexed by integer labels), a JSON list, or a JSON object label -> name' })
        .option('templates', { type: 'string', describe: 'prompt templates, one per line with {} for the class name (default: 8 OpenAI CLIP templates)' });
    }
    return b;
  };
}

interface SuiteArgs {
  model: string;
  adapter?: string[];
  data: string;
  out?: string;
  cache?: string | boolean;
  batchSize: number;
  maxLength: number;
  imageSize?: number;
  imagePrompt?: string;
  textPrompt?: string;
  progressEvery: number;
  device: string;
  images?: string;
  classnames?: string;
  templates?: string;
  subsets?: string[];
}

function defaultOut(modelDir: string, adapters: readonly string[]): string {
  return path.join('eval-results', path.basename(modelDir) + (adapters.length ? `+${path.basename(path.dirname(adapters[adapters.length - 1]!))}` : ''));
}

const cliLog = { info: (m: string) => process.stderr.write(m + '\n'), warn: (m: string) => process.stderr.write(`warning: ${m}\n`) };

/** The model directory (a Hub id is downloaded) and the --adapter chains, in merge order. */
async function resolveEvalModel(a: { model: string; adapter?: string[] }): Promise<{ modelDir: string; adapters: string[]; modelName: string }> {
  const { resolveModelPath } = await import('../hub/download.js');
  const { resolveAdapterChain } = await import('../models/peft/chain.js');
  const modelDir = await resolveModelPath(a.model);
  const adapters: string[] = [];
  for (const ad of a.adapter ?? []) adapters.push(...(await resolveAdapterChain(ad, '--adapter')));
  return { modelDir, adapters, modelName: a.model + (adapters.length ? ` + ${adapters.length} adapter${adapters.length > 1 ? 's' : ''}` : '') };
}

/**
 * What every eval command hands its runner about the model: its name, a loader that starts the runtime
 * only when an input is not cached, the cache dir (--cache DIR, --no-cache, default <out>/embed-cache),
 * the logger and the run metadata.
 */
function evalModelOptions(
  a: { device?: string; cache?: string | boolean },
  m: { modelDir: string; adapters: string[]; modelName: string },
  imageSize: number | null,
  out: string,
) {
  return {
    outDir: out,
    modelName: m.modelName,
    loadModel: async () => {
      const { initRuntime } = await import('../runtime/index.js');
      const { loadMllmEvalModel } = await import('../eval/mllm-model.js');
      await initRuntime({ device: a.device as 'auto' });
      return loadMllmEvalModel(m.modelDir, m.adapters, imageSize);
    },
    cacheDir: a.cache === false ? null : path.resolve(typeof a.cache === 'string' ? a.cache : path.join(out, 'embed-cache')),
    log: cliLog,
    metadata: { model_dir: m.modelDir, adapters: m.adapters },
  };
}

/**
 * Run an eval that stops cleanly on the first Ctrl-C (after the current batch, the embedding cache
 * saved; exit 130) and at once on a second; null when it was interrupted.
 */
async function interruptible<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T | null> {
  const stop = new AbortController();
  const onSigint = () => {
    if (stop.signal.aborted) process.exit(130);
    process.stderr.write('\ninterrupted: finishing the current batch and saving the embedding cache (Ctrl-C again to quit at once)\n');
    stop.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    return await run(stop.signal);
  } catch (e) {
    if (!(e instanceof EvalInterrupted)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exitCode = 130;
    return null;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

async function runSuiteCommand(suite: OtherSuite, a: SuiteArgs): Promise<void> {
  positiveInt(a.batchSize, '--batch-size');
  positiveInt(a.maxLength, '--max-length');
  positiveInt(a.imageSize, '--image-size');
  // Cheap checks first: the data, then the model (which may download).
  const { readSuiteData, runSuiteEval } = await import('../eval/suite-eval.js');
  const data = await readSuiteData(suite, a.data, {
    ...(a.images ? { images: a.images } : {}),
    ...(a.classnames ? { classNames: a.classnames } : {}),
    ...(a.templates ? { templates: a.templates } : {}),
    ...(a.subsets ? { subsets: a.subsets.flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '') } : {}),
  });
  const { mllmEvalIdentity, defaultPrompts } = await import('../eval/mllm-model.js');
  const { modelDir, adapters, modelName } = await resolveEvalModel(a);
  const out = path.resolve(a.out ?? defaultOut(modelDir, adapters));
  const imageSize = a.imageSize ?? null;
  const identity = await mllmEvalIdentity(modelDir, adapters, { maxLength: a.maxLength, imageToken: 'auto', imageSize });
  const prompts = defaultPrompts(modelDir);
  const outcome = await interruptible((signal) => runSuiteEval({
    data,
    dataPath: a.data,
    ...evalModelOptions(a, { modelDir, adapters, modelName }, imageSize, out),
    identity,
    batchSize: a.batchSize,
    maxLength: a.maxLength,
    // A shell cannot easily pass a newline: a literal \n in the prompt stands for one.
    imagePrompt: (a.imagePrompt ?? prompts.image).replace(/\\n/g, '\n'),
    textPrompt: (a.textPrompt ?? prompts.text).replace(/\\n/g, '\n'),
    progressEverySeconds: a.progressEvery,
    signal,
  }));
  if (outcome === null) return;
  printOutcome(outcome, [outcome.files.result, outcome.files.markdown]);
}

/** The result table on stdout; throughput, cache use and the files written on stderr. */
function printOutcome(outcome: { table: string; embedded: number; cached: number; seconds: number; embeddings_per_second: number | null }, files: readonly string[]): void {
  process.stdout.write(outcome.table);
  const eps = outcome.embeddings_per_second;
  process.stderr.write(
    `${outcome.embedded} inputs embedded${eps === null ? '' : ` at ${eps.toFixed(1)} embeddings/s`}, ${outcome.cached} from the cache, ${outcome.seconds.toFixed(1)} s in all\n` +
      `wrote ${files.join(', ')}\n`,
  );
}

function mmebBuilder(y: Argv) {
  return y
    .option('model', { type: 'string', describe: 'checkpoint directory or Hub id', demandOption: true })
    .option('adapter', { type: 'string', array: true, describe: 'LoRA adapter dir, or a training stage output dir (its whole adapter chain); repeatable, merged in order' })
    .option('data', { type: 'string', describe: 'MMEB-eval folder (one sub-folder per dataset), or a folder holding mmeb-eval/ (data/synthetic)', demandOption: true })
    .option('datasets', { type: 'string', array: true, describe: 'only these datasets (comma-separated or repeated)' })
    .option('out', { type: 'string', describe: 'folder for mmeb.json, mmeb-summary.json, mmeb-report.md/.html (default eval-results/<model>)' })
    .option('cache', { type: 'string', describe: 'embedding cache folder (default <out>/embed-cache); share it between runs to reuse embeddings. --no-cache: keep embeddings in memory only' })
    .option('batch-size', { type: 'number', default: 16 })
    .option('max-length', { type: 'number', default: 256, describe: 'truncate inputs to this many tokens' })
    .option('image-size', { type: 'number', describe: "refuse to run unless the model's image size is this (default: the model's own)" })
    .option('image-token', { type: 'string', default: 'auto', describe: "replace MMEB's <|image_1|> with this marker; auto: pass qry_text as is" })
    .option('progress-every', { type: 'number', default: 10, describe: 'seconds between progress lines' })
    .option('device', { type: 'string', choices: ['auto', 'cpu', 'native', 'cuda'], default: 'auto' })
    .example('$0 eval mmeb --model ./llava-1.6 --adapter runs/unime/hardneg --data ~/MMEB-eval', 'stage-2 model on the 36 datasets')
    .example('$0 eval mmeb --model data/synthetic/models/tiny-llava --data data/synthetic --datasets SynCls,SynVQA', 'two synthetic datasets');
}

interface MmebArgs {
  model: string;
  adapter?: string[];
  data: string;
  datasets?: string[];
  out?: string;
  cache?: string | boolean;
  batchSize: number;
  maxLength: number;
  imageSize?: number;
  imageToken: string;
  progressEvery: number;
  device: string;
}

function positiveInt(v: number | undefined, flag: string): void {
  if (v !== undefined && !(Number.isInteger(v) && v > 0)) throw new UnimeError(`must be a positive whole number, got ${v}`, { field: flag });
}

async function runMmebCommand(a: MmebArgs): Promise<void> {
  positiveInt(a.batchSize, '--batch-size');
  positiveInt(a.maxLength, '--max-length');
  positiveInt(a.imageSize, '--image-size');
  // yargs reads --no-cache as cache=false.
  // Cheap checks first: the data folder, then the model (which may download).
  const { openMmebEvalRoot } = await import('../eval/catalog.js');
  await openMmebEvalRoot(a.data, '--data');
  const { mllmEvalIdentity } = await import('../eval/mllm-model.js');
  const { modelDir, adapters, modelName } = await resolveEvalModel(a);
  const datasets = a.datasets?.flatMap((d) => d.split(',')).map((d) => d.trim()).filter((d) => d !== '');
  const out = path.resolve(a.out ?? defaultOut(modelDir, adapters));
  const imageSize = a.imageSize ?? null;
  const settings = { maxLength: a.maxLength, imageToken: a.imageToken, imageSize };
  const identity = await mllmEvalIdentity(modelDir, adapters, settings);
  const outcome = await interruptible((signal) => runMmebEval({
    dataRoot: a.data,
    datasets: datasets && datasets.length ? datasets : 'all',
    ...evalModelOptions(a, { modelDir, adapters, modelName }, imageSize, out),
    identity,
    batchSize: a.batchSize,
    maxLength: a.maxLength,
    imageToken: a.imageToken,
    progressEverySeconds: a.progressEvery,
    signal,
  }));
  if (outcome === null) return;
  printOutcome(outcome, [outcome.files.result, outcome.files.summary, outcome.files.markdown, outcome.files.html]);
  if (outcome.failed.length > 0) throw failedDatasetsError(outcome);
}

interface SummarizeArgs {
  result: string;
  metric: string;
  out?: string;
}
interface CompareArgs {
  results: string[];
  labels?: string[];
  metric: string;
  out?: string;
}

/** Default label of a result file: its parent folder for the usual `<run>/<stage>/mmeb.json`, else the file name. */
function defaultLabel(file: string): string {
  const base = path.basename(file, path.extname(file));
  return /^(mmeb|results?|report|mmeb[-_]results?)$/i.test(base) ? path.basename(path.dirname(path.resolve(file))) : base;
}

export function builder(y: Argv) {
  let b: Argv = y.command(
    'mmeb',
    'Evaluate a model on MMEB (36 image tasks, hit@1) or an MMEB-shaped folder such as the synthetic benchmark',
    mmebBuilder,
    wrap(runMmebCommand),
  );
  for (const suite of OTHER_SUITES) {
    b = b.command(
      suite,
      {
        retrieval: 'Caption retrieval (Flickr30K, COCO, ...): recall@1/5/10, image->text and text->image',
        sugarcrepe: 'SugarCrepe: accuracy of caption vs hard negative on its 7 subsets',
        zeroshot: 'Zero-shot classification with prompt templates: top-1 and top-5 accuracy',
      }[suite],
      suiteBuilder(suite),
      wrap((a: SuiteArgs) => runSuiteCommand(suite, a)),
    );
  }
  return b
    .command(
      'summarize <result>',
      'Aggregate an MMEB result JSON (VLM2Vec layout): meta-tasks, IND/OOD, overall',
      (s) =>
        s
          .positional('result', { type: 'string', demandOption: true, describe: 'result JSON with metrics.image.<dataset>' })
          .option('metric', { type: 'string', default: MMEB_MAIN_METRIC, describe: 'metric to aggregate' })
          .option('out', { type: 'string', describe: 'also write <out>/mmeb-report.md and .html' }),
      wrap(async (a: SummarizeArgs) => {
        const summary = summarizeMmeb(await readMmebReport(a.result), a.metric);
        process.stdout.write(markdownReport(summary));
        if (a.out) {
          const w = await writeResultReports(a.out, summary);
          process.stderr.write(`wrote ${w.markdown} and ${w.html}\n`);
        }
      }),
    )
    .command(
      'compare <results..>',
      'Show several results side by side (base vs stage 1 vs stage 2), deltas against the first: MMEB results, or <suite>.json files of one suite',
      (s) =>
        s
          .positional('results', {
            type: 'string',
            array: true,
            demandOption: true,
            describe: "result JSON files (mmeb.json / VLM2Vec layout, or <suite>.json), baseline first; MMEB results joined with '+' (s0/mmeb.json+s1/mmeb.json) make one column, their mean over runs (seeds)",
          })
          .option('labels', { type: 'string', array: true, describe: 'column labels, one per result (default: folder or file names)' })
          .option('metric', { type: 'string', default: MMEB_MAIN_METRIC })
          .option('out', { type: 'string', describe: 'also write <out>/mmeb-comparison.md and .html' }),
      wrap(async (a: CompareArgs) => {
        if (a.labels && a.labels.length !== a.results.length) {
          throw new UnimeError(`${a.labels.length} labels for ${a.results.length} results`, { field: '--labels', fix: 'give one label per result file, in the same order' });
        }
        const labelOf = (i: number) => a.labels?.[i] ?? defaultLabel(a.results[i]!);
        // <suite>.json files (retrieval, SugarCrepe, zero-shot) get the suite table; MMEB results the MMEB one.
        const suites = await Promise.all(a.results.map((f) => readSuiteResultIfAny(f)));
        if (suites.some((x) => x !== null)) {
          const mmeb = a.results.filter((_, i) => suites[i] === null);
          if (mmeb.length > 0) throw new UnimeError(`${mmeb.join(', ')} ${mmeb.length === 1 ? 'is not a suite result' : 'are not suite results'} while the others are`, { field: 'results', fix: 'compare MMEB results and suite results (<suite>.json) separately' });
          if (a.metric !== MMEB_MAIN_METRIC) throw new UnimeError('--metric picks the MMEB metric; suite results show all their headline numbers', { field: '--metric', fix: 'leave --metric out' });
          const table = suiteComparison(suites.map((summary, i) => ({ label: labelOf(i), summary: summary! })));
          const title = `${table.suite} results: ${a.results.map((_, i) => labelOf(i)).join(' vs ')}`;
          const markdown = `# ${escapeMarkdown(title)}\n\n${suiteComparisonMarkdown(table, 2)}`;
          process.stdout.write(markdown);
          if (a.out) {
            const base = path.join(a.out, `${table.suite}-comparison`);
            await writeBytesAtomic(`${base}.md`, markdown);
            await writeBytesAtomic(`${base}.html`, htmlPage(title, `<h1>${escapeHtml(title)}</h1>\n${suiteComparisonHtml(table, 2)}`));
            process.stderr.write(`wrote ${base}.md and ${base}.html\n`);
          }
          return;
        }
        const entries: ComparisonEntry[] = [];
        for (const [i, arg] of a.results.entries()) {
          // 'a.json+b.json+c.json': one column, the mean of several runs (seeds) of one model
          const files = arg.split('+').filter((f) => f !== '');
          const runs: { summary: MmebSummary; rowHits: RowHits | null }[] = [];
          for (const file of files) {
            // `unime eval mmeb` writes the per-row hits into the summary beside its mmeb.json: with them, deltas get intervals.
            const extras =
              path.basename(file) === RESULT_FILE ? await readSummaryExtras(path.join(path.dirname(file), SUMMARY_FILE)) : { rowHits: null, problem: undefined };
            if (extras.problem) process.stderr.write(`warning: ${extras.problem}\n`);
            runs.push({ summary: summarizeMmeb(await readMmebReport(file), a.metric), rowHits: extras.rowHits });
          }
          if (runs.length === 1) {
            entries.push({ label: labelOf(i), summary: runs[0]!.summary, ...(runs[0]!.rowHits ? { rowHits: runs[0]!.rowHits } : {}) });
            continue;
          }
          const summary = averageSummaries(runs.map((r) => r.summary), files);
          // the runs' hits per dataset, where every run has them (pairedBootstrap checks they match the scores)
          const seedHits = new Map<string, Uint8Array[]>();
          for (const d of summary.datasets) {
            const hits = runs.map((r) => r.rowHits?.get(d.name));
            if (hits.every((h): h is Uint8Array => h !== undefined)) seedHits.set(d.name, hits);
          }
          const label = a.labels?.[i] ?? `${defaultLabel(files[0]!)} (mean of ${files.length})`;
          entries.push({ label, summary, ...(seedHits.size > 0 ? { seedHits } : {}) });
        }
        process.stdout.write(comparisonMarkdown(entries));
        if (a.out) {
          const w = await writeComparisonReports(a.out, entries);
          process.stderr.write(`wrote ${w.markdown} and ${w.html}\n`);
        }
      }),
    )
    .demandCommand(1, 'name what to do: mmeb, retrieval, sugarcrepe, zeroshot, summarize or compare');
}

// The subcommands carry their own handlers.
export const handler = () => {};
