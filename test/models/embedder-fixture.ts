/** A tiny text embedding model directory: a tokenizer fixture's files + a random llama decoder sized for it. */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeShardedSafetensors } from '../../src/io/checkpoint.js';
import { buildLlamaConfig, expectedDecoderWeights } from '../../src/models/text/index.js';
import { Rng } from '../../src/runtime/rng.js';
import { fixture } from '../helpers.js';

export const EMBEDDER_TOKENIZER = 'spm-unigram';

export async function makeTinyEmbedder(dir: string, opts: { seed?: number; tokenizer?: string; hidden?: number } = {}): Promise<string> {
  await fsp.mkdir(dir, { recursive: true });
  const tokDir = fixture('tokenizers', opts.tokenizer ?? EMBEDDER_TOKENIZER);
  for (const f of await fsp.readdir(tokDir)) await fsp.copyFile(path.join(tokDir, f), path.join(dir, f));
  const hidden = opts.hidden ?? 32;
  const cfg = {
    model_type: 'llama',
    architectures: ['LlamaForCausalLM'],
    hidden_size: hidden,
    intermediate_size: 2 * hidden,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 512,
    hidden_act: 'silu',
    max_position_embeddings: 256,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
  };
  await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  const config = buildLlamaConfig(cfg, { file: path.join(dir, 'config.json'), fieldPrefix: '' });
  const rng = new Rng(opts.seed ?? 1);
  const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of expectedDecoderWeights(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNorm = name.endsWith('norm.weight');
    for (let i = 0; i < n; i++) data[i] = isNorm ? 1 + 0.1 * rng.normal() : 0.2 * rng.normal();
    tensors['model.' + name] = { dtype: 'F32', shape, data };
  }
  await writeShardedSafetensors(dir, tensors);
  return dir;
}
