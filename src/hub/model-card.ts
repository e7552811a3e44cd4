/**
 * The model card (README.md) a push uploads: YAML front matter the Hub understands
 * (library_name, base_model, tags, datasets, pipeline_tag, license, model-index with the eval
 * results) and a body with usage, the training recipe in brief, and the eval table.
 *
 * Everything comes from the checkpoint directory: adapter_config.json / config.json for the base
 * model, recipe*.yaml for the training summary, and an eval JSON in VLM2Vec's layout
 * `{metrics: {image: {<dataset>: {"hit@1": 0.xx, ...}}}}` for the results.
 */
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import YAML from 'yaml';
import { log } from '../runtime/log.js';
import { looksLikeRepoId } from './repo.js';

/** modality -> dataset -> metric -> value */
export type EvalResults = Record<string, Record<string, Record<string, number>>>;

export interface RecipeStageSummary {
  name: string;
  kind: string;
  /** One line of the settings that matter ("lr 1e-4, 1000 steps, batch 1024, LoRA r16"). */
  details: string;
}

export interface RecipeSummary {
  file: string;
  name?: string | undefined;
  description?: string | undefined;
  stages: RecipeStageSummary[];
  /** Hub ids of models the recipe names (first = the backbone). */
  models: string[];
  datasets: string[];
}

export interface ModelCardInput {
  repoId: string;
  /** Whether the upload is a PEFT adapter (else a merged model). */
  adapter: boolean;
  baseModel?: string | undefined;
  license?: string | undefined;
  datasets?: string[] | undefined;
  tags?: string[] | undefined;
  pipelineTag?: 'feature-extraction' | 'sentence-similarity' | undefined;
  recipe?: RecipeSummary | undefined;
  eval?: EvalResults | undefined;
  evalFile?: string | undefined;
}

/** The Hub datasets behind the eval modalities of VLM2Vec's layout. */
const EVAL_DATASET_BY_MODALITY: Record<string, string> = { image: 'TIGER-Lab/MMEB-eval' };
const EVAL_DATASET_FALLBACK = 'TIGER-Lab/MMEB-V2';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Read VLM2Vec's eval layout; undefined when `json` is not in it or holds no numbers. */
export function parseEvalResults(json: unknown): EvalResults | undefined {
  if (!isRecord(json) || !isRecord(json.metrics)) return undefined;
  const out: EvalResults = {};
  for (const [modality, datasets] of Object.entries(json.metrics)) {
    if (!isRecord(datasets)) continue;
    for (const [dataset, metrics] of Object.entries(datasets)) {
      if (!isRecord(metrics)) continue;
      for (const [metric, value] of Object.entries(metrics)) {
        if (typeof value !== 'number' || !Number.isFinite(value)) continue;
        ((out[modality] ??= {})[dataset] ??= {})[metric] = value;
      }
    }
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
}

/** A recipe value with `${vars.x}` resolved from the recipe's vars (the only interpolation a card needs). */
function resolveVar(v: unknown, vars: Record<string, unknown>): unknown {
  if (typeof v !== 'string') return v;
  return v.replace(/\$\{vars\.([A-Za-z0-9_]+)\}/g, (m, k: string) => (typeof vars[k] === 'string' || typeof vars[k] === 'number' ? String(vars[k]) : m));
}

function modelPath(v: unknown, vars: Record<string, unknown>): string | undefined {
  const r = resolveVar(isRecord(v) ? v.path : v, vars);
  return str(r);
}

/** Only ids that exist as Hub ids (not local paths) belong in metadata. */
function hubIdOrUndefined(s: string | undefined, baseDir?: string): string | undefined {
  if (!s || !looksLikeRepoId(s) || !s.includes('/')) return undefined;
  if (baseDir && existsSync(path.resolve(baseDir, s))) return undefined;
  return s;
}

function fmtNum(n: unknown): string | undefined {
  return typeof n === 'number' ? String(n) : undefined;
}

function stageDetails(stage: Record<string, unknown>, vars: Record<string, unknown>): string {
  const parts: string[] = [];
  const model = modelPath(stage.model ?? stage.teacher ?? stage.text_model, vars);
  if (model) parts.push(`model ${model}`);
  if (str(stage.suite)) parts.push(`suite ${String(stage.suite)}`);
  const train = isRecord(stage.train) ? stage.train : undefined;
  if (train) {
    const lr = fmtNum(train.lr);
    if (lr) parts.push(`lr ${lr}`);
    if (typeof train.max_steps === 'number') parts.push(`${train.max_steps} steps`);
    else if (typeof train.epochs === 'number') parts.push(`${train.epochs} epoch${train.epochs === 1 ? '' : 's'}`);
    if (typeof train.batch_size === 'number') parts.push(`batch ${train.batch_size}`);
  }
  if (isRecord(stage.lora) && typeof stage.lora.rank === 'number') parts.push(`LoRA r${stage.lora.rank}${typeof stage.lora.alpha === 'number' ? `/a${stage.lora.alpha}` : ''}`);
  if (str(stage.quantization) && stage.quantization !== 'none') parts.push(String(stage.quantization));
  if (isRecord(stage.loss)) {
    if (str(stage.loss.mode)) parts.push(`loss ${String(stage.loss.mode)}`);
    if (typeof stage.loss.temperature === 'number') parts.push(`temperature ${stage.loss.temperature}`);
    if (typeof stage.loss.hard_negatives === 'number') parts.push(`${stage.loss.hard_negatives} hard negatives`);
  }
  return parts.join(', ');
}

/** A best-effort summary of a recipe YAML (raw, so a card never fails on a recipe it cannot validate). */
export function summarizeRecipe(text: string, file: string, baseDir?: string): RecipeSummary | undefined {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(doc)) return undefined;
  const vars = isRecord(doc.vars) ? doc.vars : {};
  const stages: RecipeStageSummary[] = [];
  const models: string[] = [];
  const datasets = new Set<string>();
  for (const s of Array.isArray(doc.stages) ? doc.stages : []) {
    if (!isRecord(s)) continue;
    const kind = str(s.kind) ?? '?';
    stages.push({ name: str(s.name) ?? '?', kind, details: stageDetails(s, vars) });
    if (kind !== 'teacher-embed') {
      const m = hubIdOrUndefined(modelPath(s.model ?? s.text_model, vars), baseDir);
      if (m && !models.includes(m)) models.push(m);
    }
    if (kind === 'unime-hardneg') datasets.add('TIGER-Lab/MMEB-train');
    if (kind === 'eval' && s.suite === 'mmeb') datasets.add('TIGER-Lab/MMEB-eval');
    // Data paths are local files unless spelled as Hub URLs.
    const dataPath = isRecord(s.data) ? str(resolveVar(s.data.path, vars)) : undefined;
    const hubData = dataPath?.startsWith('hf://datasets/') ? hubIdOrUndefined(dataPath.slice('hf://datasets/'.length)) : undefined;
    if (hubData) datasets.add(hubData);
  }
  return { file, name: str(doc.name), description: str(doc.description), stages, models, datasets: [...datasets] };
}

function pct(v: number): string {
  return v >= 0 && v <= 1 ? (v * 100).toFixed(1) : v.toFixed(2);
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

/** The front matter object (also used by tests and `push --dry-run`). */
export function modelCardMetadata(input: ModelCardInput): Record<string, unknown> {
  const name = input.repoId.split('/').pop() ?? input.repoId;
  const tags = ['unime', 'multimodal-embedding', 'embeddings', ...(input.adapter ? ['peft', 'lora'] : []), ...(input.eval ? ['mmeb'] : []), ...(input.tags ?? [])];
  const datasets = [...new Set([...(input.datasets ?? []), ...(input.recipe?.datasets ?? [])])];
  const meta: Record<string, unknown> = { library_name: 'unime' };
  if (input.license) meta.license = input.license;
  if (input.baseModel) {
    meta.base_model = input.baseModel;
    meta.base_model_relation = input.adapter ? 'adapter' : 'finetune';
  }
  meta.pipeline_tag = input.pipelineTag ?? 'feature-extraction';
  meta.tags = [...new Set(tags)];
  if (datasets.length > 0) meta.datasets = datasets;
  if (input.eval) {
    const results: unknown[] = [];
    for (const [modality, byDataset] of Object.entries(input.eval)) {
      for (const [dataset, metrics] of Object.entries(byDataset)) {
        results.push({
          task: { type: meta.pipeline_tag, name: `MMEB ${modality} embedding` },
          dataset: { name: `MMEB ${dataset}`, type: EVAL_DATASET_BY_MODALITY[modality] ?? EVAL_DATASET_FALLBACK, config: dataset, split: 'test' },
          metrics: Object.entries(metrics).map(([metric, value]) => ({ type: metric, value, name: metric })),
        });
      }
    }
    meta['model-index'] = [{ name, results }];
  }
  return meta;
}

/** README.md text: front matter + body. */
export function buildModelCard(input: ModelCardInput): string {
  const meta = modelCardMetadata(input);
  const name = input.repoId.split('/').pop() ?? input.repoId;
  const lines: string[] = [];
  lines.push(`# ${name}`, '');
  const what = input.adapter ? 'a LoRA adapter' : 'a multimodal embedding model';
  lines.push(
    `This is ${what} trained with unime, a toolkit that turns multimodal LLMs into universal embedding models (texts, images and interleaved inputs in one space).` +
      (input.baseModel ? ` Base model: [${input.baseModel}](https://huggingface.co/${input.baseModel}).` : ''),
    '',
  );
  if (input.recipe?.description) lines.push(`> ${input.recipe.description}`, '');

  lines.push('## Usage', '', '```bash');
  lines.push(`unime embed --model ${input.repoId} --text "a photo of a cat" --out text.jsonl`);
  lines.push(`unime embed --model ${input.repoId} --image cat.jpg --out image.jsonl`);
  lines.push(`unime eval mmeb --model ${input.repoId}`);
  lines.push('```', '');
  lines.push('`unime` downloads the model into the Hugging Face cache on first use (`unime pull ' + input.repoId + '` does it ahead of time).', '');

  if (input.recipe) {
    lines.push('## Training', '');
    lines.push(`Recipe \`${input.recipe.file}\`${input.recipe.name ? ` (\`${input.recipe.name}\`)` : ''}, included in this repository; rerun it with \`unime train ${input.recipe.file}\`.`, '');
    if (input.recipe.stages.length > 0) {
      lines.push('| stage | kind | settings |', '| --- | --- | --- |');
      for (const s of input.recipe.stages) lines.push(`| ${mdEscape(s.name)} | ${mdEscape(s.kind)} | ${mdEscape(s.details)} |`);
      lines.push('');
    }
  }

  if (input.eval) {
    lines.push('## Evaluation', '');
    if (input.evalFile) lines.push(`From \`${input.evalFile}\` (values in % where they are fractions).`, '');
    for (const [modality, byDataset] of Object.entries(input.eval)) {
      const metrics = [...new Set(Object.values(byDataset).flatMap((m) => Object.keys(m)))];
      lines.push(`### ${modality}`, '');
      lines.push(`| dataset | ${metrics.map(mdEscape).join(' | ')} |`, `| --- |${metrics.map(() => ' ---: |').join('')}`);
      for (const [dataset, m] of Object.entries(byDataset)) {
        lines.push(`| ${mdEscape(dataset)} | ${metrics.map((k) => (m[k] === undefined ? '' : pct(m[k]!))).join(' | ')} |`);
      }
      const means = metrics.map((k) => {
        const vals = Object.values(byDataset)
          .map((m) => m[k])
          .filter((v): v is number => v !== undefined);
        return vals.length > 0 ? pct(vals.reduce((a, b) => a + b, 0) / vals.length) : '';
      });
      if (Object.keys(byDataset).length > 1) lines.push(`| **mean** | ${means.map((v) => `**${v}**`).join(' | ')} |`);
      lines.push('');
    }
  }

  lines.push('## Files', '');
  lines.push(
    input.adapter
      ? '- `adapter_config.json`, `adapter_model.safetensors`: the PEFT LoRA adapter (apply it to the base model)'
      : '- `config.json`, `*.safetensors`: the merged model weights',
  );
  lines.push('- tokenizer and processor files, the recipe YAML, the training log and eval results when present', '');

  return `---\n${YAML.stringify(meta, { lineWidth: 0 })}---\n\n${lines.join('\n')}`;
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The eval JSON of a checkpoint dir: the first eval*.json / *results*.json in VLM2Vec's layout. */
export async function findEvalResults(dir: string, files: readonly string[]): Promise<{ file: string; results: EvalResults } | undefined> {
  const candidates = files.filter((f) => /(^|\/)[^/]*(eval|results)[^/]*\.json$/i.test(f)).sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
  for (const f of candidates) {
    const results = parseEvalResults(await readJson(path.join(dir, ...f.split('/'))));
    if (results) return { file: f, results };
  }
  return undefined;
}

/**
 * Gather the card's inputs from a checkpoint directory. `files` are the directory's relative
 * paths (what the push uploads); `extra` wins over what the directory says.
 */
export async function modelCardInputFromCheckpoint(
  dir: string,
  repoId: string,
  files: readonly string[],
  extra: Partial<ModelCardInput> = {},
): Promise<ModelCardInput> {
  const adapter = files.includes('adapter_config.json');
  const adapterCfg = adapter ? await readJson(path.join(dir, 'adapter_config.json')) : undefined;
  const cfg = files.includes('config.json') ? await readJson(path.join(dir, 'config.json')) : undefined;
  let recipe: RecipeSummary | undefined;
  const recipeFile = files.filter((f) => /(^|\/)recipe[^/]*\.ya?ml$/i.test(f)).sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b))[0];
  if (recipeFile) {
    recipe = summarizeRecipe(await fsp.readFile(path.join(dir, ...recipeFile.split('/')), 'utf8'), recipeFile, process.cwd());
    if (!recipe) log.warn(`${recipeFile} is not a readable recipe; the model card leaves out the training summary`);
  }
  const baseModel =
    extra.baseModel ??
    hubIdOrUndefined(str(isRecord(adapterCfg) ? adapterCfg.base_model_name_or_path : undefined), dir) ??
    hubIdOrUndefined(str(isRecord(cfg) ? cfg._name_or_path : undefined), dir) ??
    recipe?.models[0];
  const ev = await findEvalResults(dir, files);
  const datasets = [...(extra.datasets ?? []), ...(ev ? [...new Set(Object.keys(ev.results).map((m) => EVAL_DATASET_BY_MODALITY[m] ?? EVAL_DATASET_FALLBACK))] : [])];
  return {
    repoId,
    adapter,
    baseModel,
    license: extra.license,
    datasets: [...new Set(datasets)],
    tags: extra.tags,
    pipelineTag: extra.pipelineTag,
    recipe,
    eval: ev?.results,
    evalFile: ev?.file,
  };
}
