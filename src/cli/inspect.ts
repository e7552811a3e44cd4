import type { Argv } from 'yargs';
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { handler, formatTable, formatCount } from './common.js';
import { openCheckpoint } from '../io/checkpoint.js';
import { readHfConfig, describeConfig } from '../io/hf-config.js';
import { formatBytes } from '../util/format.js';
import { UnimeError } from '../errors.js';

export const command = 'inspect <checkpoint>';
export const describe = 'Show a checkpoint: architecture, dtypes, parameters, tensors';
export function builder(y: Argv) {
  return y
    .positional('checkpoint', { type: 'string', demandOption: true, describe: 'a .safetensors file, or a directory (single file or sharded with model.safetensors.index.json)' })
    .option('filter', { type: 'string', describe: 'only tensors whose name contains this text' })
    .option('limit', { type: 'number', describe: 'print at most this many tensor rows' })
    .option('tensors', { type: 'boolean', default: true, describe: 'print the tensor table (--no-tensors for the summary only)' })
    .option('json', { type: 'boolean', default: false, describe: 'print everything as JSON' });
}

interface Args {
  checkpoint: string;
  filter?: string;
  limit?: number;
  tensors: boolean;
  json: boolean;
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
  tensors: { name: string; dtype: string; shape: number[]; numel: number; bytes: number }[];
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

const handle = handler(async (args: Args) => {
  const report = await inspectCheckpoint(args.checkpoint);
  if (args.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const opts: { filter?: string; limit?: number; tensors: boolean } = { tensors: args.tensors };
  if (args.filter !== undefined) opts.filter = args.filter;
  if (args.limit !== undefined) opts.limit = args.limit;
  process.stdout.write(renderInspect(report, opts));
});
export { handle as handler };
