import type { Argv } from 'yargs';
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { handler, formatTable, formatCount } from './common.js';
import { openCheckpoint } from '../io/checkpoint.js';
import { readHfConfig, describeConfig } from '../io/hf-config.js';
import { formatBytes } from '../util/format.js';
import { UnimeError } from '../errors.js';
import type { HfConfig } from '../io/hf-config.js';
import type { LoadMemoryReport } from '../models/load-memory.js';
import { buildClipVisionConfig, buildSiglipVisionConfig, CLIP_VIT_L14_336, featureSelectionFromConfig } from '../models/vision/config.js';

export const command = 'inspect <checkpoint>';
export const describe = 'Show a checkpoint: architecture, dtypes, parameters, tensors';
export function builder(y: Argv) {
  return y
    .positional('checkpoint', { type: 'string', demandOption: true, describe: 'a .safetensors file, or a directory (single file or sharded with model.safetensors.index.json)' })
    .option('filter', { type: 'string', describe: 'only tensors whose name contains this text' })
    .option('limit', { type: 'number', describe: 'print at most this many tensor rows' })
    .option('tensors', { type: 'boolean', default: true, describe: 'print the tensor table (--no-tensors for the summary only)' })
    .option('json', { type: 'boolean', default: false, describe: 'print everything as JSON' })
    .option('load', {
      type: 'boolean',
      default: false,
      describe: 'also load the weights and report memory: size on disk, weights in memory, peak RSS growth during the load',
    })
    .option('load-mode', {
      choices: ['model', 'tensors'] as const,
      describe: "with --load: 'model' loads what unime embed loads (default with a config.json), 'tensors' every tensor as float32",
    });
}

interface Args {
  checkpoint: string;
  filter?: string;
  limit?: number;
  tensors: boolean;
  json: boolean;
  load: boolean;
  loadMode?: 'model' | 'tensors';
}

/** Collapse a tensor name to its module group: everything up to the first numeric segment, e.g. `model.layers.*`. */
export function moduleGroup(name: string): string {
  const parts = name.split('.');
  const i = parts.findIndex((p) => /^\d+$/.test(p));
  if (i >= 0) return [...parts.slice(0, i), '*'].join('.');
  return parts.length > 1 ? parts.slice(0, -1).join('.') : name;
}

export async function inspectCheckpoint(target: string): Promise<InspectReport> {
  if (!existsSync(target)) throw new UnimeError(`no such file or directory`, { file: target, fix: 'pass a .safetensors file or a checkpoint directory' });
  const ckpt = await openCheckpoint(target);
  try {
    const dir = statSync(target).isDirectory() ? target : path.dirname(target);
    const configPath = path.join(dir, 'config.json');
    const config = existsSync(configPath) ? await readHfConfig(configPath) : null;
    const tensors = ckpt.names.map((name) => {
      const i = ckpt.info(name);
      return { name, dtype: i.dtype, shape: [...i.shape], numel: i.numel, bytes: i.byteLength };
    });
    const dtypes: Record<string, { tensors: number; bytes: number; params: number }> = {};
    const groups = new Map<string, { tensors: number; params: number }>();
    let params = 0;
    let bytes = 0;
    for (const t of tensors) {
      const d = (dtypes[t.dtype] ??= { tensors: 0, bytes: 0, params: 0 });
      d.tensors++;
      d.bytes += t.bytes;
      d.params += t.numel;
      params += t.numel;
      bytes += t.bytes;
      const g = moduleGroup(t.name);
      const gg = groups.get(g) ?? { tensors: 0, params: 0 };
      gg.tensors++;
      gg.params += t.numel;
      groups.set(g, gg);
    }
    return {
      checkpoint: target,
      files: ckpt.files,
      architecture: config ? describeConfig(config) : null,
      config: config ? summarizeConfig(config as Record<string, unknown>) : null,
      parameters: params,
      tensorBytes: bytes,
      dtypes,
      modules: [...groups.entries()].map(([name, v]) => ({ name, ...v })),
      metadata: ckpt.metadata ?? {},
      assembly: config ? describeAssembly(config, tensors, dir, configPath) : null,
      tensors,
    };
  } finally {
    await ckpt.close();
  }
}

export interface InspectReport {
  checkpoint: string;
  files: string[];
  architecture: ReturnType<typeof describeConfig> | null;
  config: Record<string, unknown> | null;
  parameters: number;
  tensorBytes: number;
  dtypes: Record<string, { tensors: number; bytes: number; params: number }>;
  modules: { name: string; tensors: number; params: number }[];
  metadata: Record<string, string>;
  /** How a multimodal (LLaVA-family) checkpoint is put together; null for other checkpoints. */
  assembly: AssemblyReport | null;
  tensors: { name: string; dtype: string; shape: number[]; numel: number; bytes: number }[];
}

export interface AssemblyReport {
  modelType: string;
  tower: { modelType: string; imageSize: number; patchSize: number; gridSize: number; hiddenSize: number; numLayers: number; prefix: string | null; params: number };
  features: { layer: number | number[]; strategy: 'default' | 'full' };
  projector: { activation: string; inDim: number; outDim: number; prefix: string | null; params: number };
  decoder: { modelType: string | null; hiddenSize: number | null; numLayers: number | null; vocabSize: number | null; prefix: string | null; params: number; lmHeadParams: number };
  /** Image tokens per image (null: depends on the image, anyres tiling). */
  imageTokens: number | null;
  imageTokenId: number | null;
  /** The tokenizer's text for the image token, when a tokenizer config is beside the weights. */
  imageToken: string | null;
  /** LLaVA-NeXT / OneVision: the tiling the image token count depends on. */
  anyres?: { pinpoints: number; largest: [number, number] | null; maxNumPatches: number | null; imageNewline: string | null };
  /** Phi-3.5-V: the HD crops the image token count depends on. */
  hd?: { numCrops: number | null; mergedSide: number };
  /** Why part of the description is missing (a config field the loader would also refuse). */
  problem?: string;
}

/** LLaVA-family model types and the vision tower their vision_config defaults to (transformers). */
const LLAVA_FAMILY: Record<string, string> = { llava: 'clip_vision_model', llava_next: 'clip_vision_model', llava_onevision: 'siglip_vision_model' };
const TOWER_PREFIXES = ['model.vision_tower.vision_model.', 'vision_tower.vision_model.', 'model.vision_tower.', 'vision_tower.'];
const PROJECTOR_PREFIXES = ['model.multi_modal_projector.', 'multi_modal_projector.'];
const DECODER_PREFIXES = ['model.language_model.', 'language_model.model.', 'language_model.'];

function imageTokenText(dir: string, id: number): string | null {
  try {
    const cfg = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as { added_tokens_decoder?: Record<string, { content?: string }> };
    const c = cfg.added_tokens_decoder?.[String(id)]?.content;
    if (typeof c === 'string') return c;
  } catch {
    // no tokenizer_config.json: try tokenizer.json
  }
  try {
    const tok = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as { added_tokens?: { id: number; content: string }[] };
    return tok.added_tokens?.find((t) => t.id === id)?.content ?? null;
  } catch {
    return null;
  }
}

/** Tower, feature selection, projector, decoder and image tokens of a LLaVA-family checkpoint, from its config and tensor names. */
export function describeAssembly(cfg: HfConfig, tensors: readonly { name: string; numel: number }[], dir: string, configFile: string): AssemblyReport | null {
  const type = cfg.model_type ?? undefined;
  if (type === 'phi3_v') return describePhi3V(cfg, tensors, dir, configFile);
  if (type === undefined || !(type in LLAVA_FAMILY)) return null;
  const vcfg = (cfg.vision_config ?? {}) as HfConfig;
  const vtype = vcfg.model_type ?? LLAVA_FAMILY[type]!;
  const src = { file: configFile, fieldPrefix: 'vision_config.' };
  let problem: string | undefined;
  let vision;
  let features: AssemblyReport['features'] = { layer: -2, strategy: 'default' };
  try {
    vision = vtype === 'siglip_vision_model' ? buildSiglipVisionConfig(vcfg, src) : buildClipVisionConfig(vcfg, src);
    features = featureSelectionFromConfig(cfg, configFile);
  } catch (e) {
    problem = (e as Error).message;
  }
  const prefixOf = (candidates: string[]) => candidates.find((p) => tensors.some((t) => t.name.startsWith(p))) ?? null;
  const paramsUnder = (prefix: string | null) => (prefix === null ? 0 : tensors.reduce((n, t) => n + (t.name.startsWith(prefix) ? t.numel : 0), 0));
  const towerPrefix = prefixOf(TOWER_PREFIXES);
  const projectorPrefix = prefixOf(PROJECTOR_PREFIXES);
  const decoderPrefix = prefixOf(DECODER_PREFIXES);
  const tcfg = (cfg.text_config ?? {}) as HfConfig;
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  const layers = Array.isArray(features.layer) ? features.layer.length : 1;
  const textHidden = num(tcfg.hidden_size);
  const lmHead = decoderPrefix === 'language_model.model.' ? 'language_model.lm_head.' : 'lm_head.';
  const imageTokenId = num(cfg.image_token_index ?? cfg.image_token_id ?? (type === 'llava' ? 32000 : undefined));
  let imageTokens: number | null = null;
  if (type === 'llava' && vision) imageTokens = vision.gridSize * vision.gridSize + (features.strategy === 'full' && vision.classToken ? 1 : 0);
  const report: AssemblyReport = {
    modelType: type,
    tower: {
      modelType: vision?.modelType ?? vtype,
      imageSize: vision?.imageSize ?? 0,
      patchSize: vision?.patchSize ?? 0,
      gridSize: vision?.gridSize ?? 0,
      hiddenSize: vision?.hiddenSize ?? 0,
      numLayers: vision?.numLayers ?? 0,
      prefix: towerPrefix,
      params: paramsUnder(towerPrefix),
    },
    features,
    projector: {
      activation: typeof cfg.projector_hidden_act === 'string' ? cfg.projector_hidden_act : 'gelu',
      inDim: (vision?.hiddenSize ?? 0) * layers,
      outDim: textHidden ?? 0,
      prefix: projectorPrefix,
      params: paramsUnder(projectorPrefix),
    },
    decoder: {
      modelType: typeof tcfg.model_type === 'string' ? tcfg.model_type : null,
      hiddenSize: textHidden,
      numLayers: num(tcfg.num_hidden_layers),
      vocabSize: num(tcfg.vocab_size),
      prefix: decoderPrefix,
      params: paramsUnder(decoderPrefix),
      lmHeadParams: paramsUnder(lmHead),
    },
    imageTokens,
    imageTokenId,
    imageToken: imageTokenId === null ? null : imageTokenText(dir, imageTokenId),
  };
  if (type !== 'llava') {
    const pp = Array.isArray(cfg.image_grid_pinpoints) ? (cfg.image_grid_pinpoints as unknown[]) : null;
    const pairs = (pp ?? []).filter((p): p is [number, number] => Array.isArray(p) && p.length === 2 && p.every((x) => typeof x === 'number'));
    const largest = pairs.reduce<[number, number] | null>((best, p) => (best === null || p[0] * p[1] > best[0] * best[1] ? [p[0], p[1]] : best), null);
    const ratio = typeof cfg.vision_aspect_ratio === 'string' ? /^anyres_max_(\d+)$/.exec(cfg.vision_aspect_ratio) : null;
    report.anyres = {
      pinpoints: pairs.length,
      largest,
      maxNumPatches: type === 'llava_onevision' ? (ratio ? Number(ratio[1]) : cfg.vision_aspect_ratio === undefined ? 9 : null) : null,
      imageNewline: ['model.image_newline', 'image_newline'].find((k) => tensors.some((t) => t.name === k)) ?? null,
    };
  }
  if (problem !== undefined) report.problem = problem;
  return report;
}

/**
 * Phi-3.5-V (remote code): the CLIP tower (vision_config when given, else CLIP ViT-L/14-336), the 2x2
 * merge with the sub_GN / glb_GN separators, img_projection, and the Phi-3 decoder at the top level.
 */
function describePhi3V(cfg: HfConfig, tensors: readonly { name: string; numel: number }[], dir: string, configFile: string): AssemblyReport {
  const paramsUnder = (prefix: string) => tensors.reduce((n, t) => n + (t.name.startsWith(prefix) ? t.numel : 0), 0);
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  const img = (cfg.img_processor ?? {}) as Record<string, unknown>;
  let problem: string | undefined;
  let vision;
  try {
    vision = buildClipVisionConfig((cfg.vision_config ?? CLIP_VIT_L14_336) as HfConfig, { file: configFile, fieldPrefix: cfg.vision_config ? 'vision_config.' : 'img_processor.' });
  } catch (e) {
    problem = (e as Error).message;
  }
  let numCrops: number | null = null;
  try {
    numCrops = num((JSON.parse(readFileSync(path.join(dir, 'preprocessor_config.json'), 'utf8')) as { num_crops?: unknown }).num_crops ?? 1);
  } catch {
    // no preprocessor_config.json beside the weights
  }
  const embed = 'model.vision_embed_tokens.';
  const hidden = num(cfg.hidden_size);
  const report: AssemblyReport = {
    modelType: 'phi3_v',
    tower: {
      modelType: vision?.modelType ?? 'clip_vision_model',
      imageSize: vision?.imageSize ?? 0,
      patchSize: vision?.patchSize ?? 0,
      gridSize: vision?.gridSize ?? 0,
      hiddenSize: vision?.hiddenSize ?? 0,
      numLayers: vision?.numLayers ?? 0,
      prefix: tensors.some((t) => t.name.startsWith(`${embed}img_processor.`)) ? `${embed}img_processor.vision_model.` : null,
      params: paramsUnder(`${embed}img_processor.`),
    },
    features: { layer: typeof img.layer_idx === 'number' ? img.layer_idx : -2, strategy: 'default' },
    projector: {
      activation: 'gelu',
      inDim: 4 * (vision?.hiddenSize ?? 0),
      outDim: hidden ?? 0,
      prefix: tensors.some((t) => t.name.startsWith(`${embed}img_projection.`)) ? `${embed}img_projection.` : null,
      params: paramsUnder(`${embed}img_projection.`),
    },
    decoder: {
      modelType: 'phi3',
      hiddenSize: hidden,
      numLayers: num(cfg.num_hidden_layers),
      vocabSize: num(cfg.vocab_size),
      prefix: tensors.some((t) => t.name.startsWith('model.layers.')) ? 'model.' : null,
      params: paramsUnder('model.') - paramsUnder(embed),
      lmHeadParams: paramsUnder('lm_head.'),
    },
    imageTokens: null,
    imageTokenId: null,
    imageToken: null,
    hd: { numCrops, mergedSide: (vision?.gridSize ?? 0) / 2 },
  };
  if (problem !== undefined) report.problem = problem;
  return report;
}

function renderAssembly(a: AssemblyReport, kv: (k: string, v: string) => void): void {
  const name = a.modelType === 'llava' ? 'LLaVA' : a.modelType === 'llava_next' ? 'LLaVA-NeXT' : a.modelType === 'phi3_v' ? 'Phi-3.5-V' : 'LLaVA-OneVision';
  const middle = a.hd ? '2x2 merge with sub_GN / glb_GN separators -> img_projection' : 'multi_modal_projector';
  kv('assembly', `${name}: vision tower -> ${middle} -> ${a.decoder.modelType ?? '?'} decoder`);
  const at = (p: string | null) => (p === null ? 'no tensors found' : `under ${p}`);
  const t = a.tower;
  kv('  tower', `${t.modelType}, ${t.imageSize}x${t.imageSize} images, patch ${t.patchSize} (${t.gridSize}x${t.gridSize} grid), hidden ${t.hiddenSize}, ${t.numLayers} layers; ${formatCount(t.params)} params ${at(t.prefix)}`);
  const layer = Array.isArray(a.features.layer) ? `[${a.features.layer.join(', ')}] concatenated` : String(a.features.layer);
  kv('  features', `hidden_states ${layer}, strategy ${a.features.strategy}${a.features.strategy === 'default' ? ' (class token dropped)' : ''}`);
  const p = a.projector;
  kv('  projector', `${p.inDim} -> ${p.outDim} -> ${p.outDim} (${p.activation}); ${formatCount(p.params)} params ${at(p.prefix)}`);
  const d = a.decoder;
  kv('  decoder', `${d.modelType ?? '?'}, hidden ${d.hiddenSize ?? '?'}, ${d.numLayers ?? '?'} layers, vocab ${d.vocabSize ?? '?'}; ${formatCount(d.params)} params ${at(d.prefix)}${d.lmHeadParams ? ` + lm_head ${formatCount(d.lmHeadParams)}` : ''}`);
  const token = a.imageTokenId === null ? '' : ` (${a.imageToken ?? 'token'} id ${a.imageTokenId})`;
  if (a.hd) {
    const m = a.hd.mergedSide;
    const n = a.hd.numCrops;
    const most = n === null ? '' : `; num_crops ${n}: at most ${(n + 1) * m * m + 1 + (n + 1) * m} tokens`;
    kv('  image', `tokens per image depend on the image size (HD crops rows x cols: (rows*cols + 1)*${m * m} + 1 + (rows + 1)*${m})${most}`);
  } else {
    kv('  image', a.imageTokens === null ? `tokens per image depend on the image size (anyres tiling)${token}` : `${a.imageTokens} tokens per image${token}`);
  }
  if (a.anyres) {
    const r = a.anyres;
    const grid = r.pinpoints === 0 ? 'no grid pinpoints in config.json (transformers\' defaults)' : `${r.pinpoints} grid pinpoints up to ${r.largest![0]}x${r.largest![1]}`;
    const max = a.modelType === 'llava_onevision' ? `, anyres_max_${r.maxNumPatches ?? '?'}` : '';
    kv('  anyres', `${grid}${max}; image_newline ${r.imageNewline === null ? 'not found' : `as ${r.imageNewline}`}`);
  }
  if (a.problem) kv('  problem', a.problem.split('\n')[0]!);
}

const plural = (n: number, w: string) => `${n.toLocaleString('en-US')} ${w}${n === 1 ? '' : 's'}`;

const CONFIG_KEYS = ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'vocab_size', 'max_position_embeddings', 'torch_dtype'];

function summarizeConfig(cfg: Record<string, unknown>): Record<string, unknown> {
  const pick = (c: Record<string, unknown> | undefined) => Object.fromEntries(CONFIG_KEYS.filter((k) => c && c[k] !== undefined).map((k) => [k, c![k]]));
  const out: Record<string, unknown> = pick(cfg);
  if (cfg.text_config && typeof cfg.text_config === 'object') out.text_config = pick(cfg.text_config as Record<string, unknown>);
  if (cfg.vision_config && typeof cfg.vision_config === 'object') out.vision_config = pick(cfg.vision_config as Record<string, unknown>);
  return out;
}

export function renderInspect(r: InspectReport, opts: { filter?: string; limit?: number; tensors: boolean }): string {
  const out: string[] = [];
  const kv = (k: string, v: string) => out.push(`${k.padEnd(13)}${v}`);
  kv('checkpoint', r.checkpoint + (r.files.length > 1 ? ` (${r.files.length} shards)` : ''));
  if (r.architecture) {
    const a = r.architecture;
    const parts = [`model_type ${a.modelType ?? '?'}`];
    if (a.textModelType) parts.push(`text ${a.textModelType}`);
    if (a.visionModelType) parts.push(`vision ${a.visionModelType}`);
    kv('architecture', `${a.architectures.join(', ') || '(none listed)'} (${parts.join('; ')})`);
  } else {
    kv('architecture', 'unknown (no config.json beside the weights)');
  }
  if (r.config) {
    const flat = Object.entries(r.config)
      .map(([k, v]) => (v && typeof v === 'object' ? `${k}: {${Object.entries(v).map(([a, b]) => `${a} ${b}`).join(', ')}}` : `${k} ${v}`))
      .join(', ');
    if (flat) kv('config', flat);
  }
  kv('parameters', `${formatCount(r.parameters)} (${r.parameters.toLocaleString('en-US')}) in ${plural(r.tensors.length, 'tensor')}`);
  kv('dtypes', Object.entries(r.dtypes).map(([d, v]) => `${d}: ${plural(v.tensors, 'tensor')}, ${formatBytes(v.bytes)}`).join('; ') || '(no tensors)');
  kv('tensor data', formatBytes(r.tensorBytes));
  if (r.assembly) renderAssembly(r.assembly, kv);
  const meta = Object.entries(r.metadata);
  if (meta.length) kv('metadata', meta.map(([k, v]) => `${k}=${v.length > 60 ? v.slice(0, 57) + '...' : v}`).join(', '));
  out.push('');
  out.push(formatTable(['module', 'tensors', 'params'], r.modules.map((m) => [m.name, String(m.tensors), formatCount(m.params)]), [1, 2]));
  if (opts.tensors) {
    let rows = r.tensors.filter((t) => !opts.filter || t.name.includes(opts.filter));
    const total = rows.length;
    if (opts.limit !== undefined && opts.limit >= 0) rows = rows.slice(0, opts.limit);
    out.push('');
    out.push(formatTable(['tensor', 'dtype', 'shape', 'params'], rows.map((t) => [t.name, t.dtype, `[${t.shape.join(', ')}]`, t.numel.toLocaleString('en-US')]), [3]));
    if (rows.length < total) out.push(`... ${total - rows.length} more (raise --limit)`);
  }
  return out.join('\n') + '\n';
}

/** The --load section: memory of loading the checkpoint against its size on disk. */
export function renderLoadMemory(r: LoadMemoryReport): string {
  const x = (n: number) => `${(n / r.diskBytes).toFixed(2)}x disk`;
  const lines = [
    ['loaded', `${r.loaded} (${r.mode}) in ${r.seconds.toFixed(2)} s`],
    ['on disk', `${formatBytes(r.diskBytes)} in ${plural(r.files.length, 'file')}`],
    ['in memory', `${formatBytes(r.weightBytes)} of float32 weights (${x(r.weightBytes)})`],
    ['peak growth', `${formatBytes(r.peakGrowthBytes)} resident (${x(r.peakGrowthBytes)}, ${(r.peakGrowthBytes / r.weightBytes).toFixed(2)}x the weights in memory); sampled ${formatBytes(r.sampledPeakGrowthBytes)}, high-water mark ${r.maxRssGrowthBytes === null ? 'not raised' : formatBytes(r.maxRssGrowthBytes)}`],
    ['buffers', `${formatBytes(r.peakArrayBufferGrowthBytes)} peak ArrayBuffer growth (${x(r.peakArrayBufferGrowthBytes)})`],
    ['rss', `${formatBytes(r.rssBeforeBytes)} before, ${formatBytes(r.rssAfterBytes)} after the load`],
  ];
  return ['', 'load memory', ...lines.map(([k, v]) => `  ${k!.padEnd(12)}${v}`)].join('\n') + '\n';
}

const handle = handler(async (args: Args) => {
  const report = await inspectCheckpoint(args.checkpoint);
  // tfjs and the model code load only when asked to load
  const loadMemory = args.load
    ? await (await import('../models/load-memory.js')).measureLoadMemory(args.checkpoint, args.loadMode ? { mode: args.loadMode } : {})
    : null;
  if (args.json) {
    process.stdout.write(JSON.stringify(loadMemory ? { ...report, loadMemory } : report, null, 2) + '\n');
    return;
  }
  const opts: { filter?: string; limit?: number; tensors: boolean } = { tensors: args.tensors };
  if (args.filter !== undefined) opts.filter = args.filter;
  if (args.limit !== undefined) opts.limit = args.limit;
  process.stdout.write(renderInspect(report, opts));
  if (loadMemory) process.stdout.write(renderLoadMemory(loadMemory));
});
export { handle as handler };
