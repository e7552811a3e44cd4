/**
 * Frozen weights are read lazily, one tensor at a time, and never held twice: loading a generated
 * float32 checkpoint of a few tens of MB (`unime inspect --load`, in its own process so the kernel's
 * RSS high-water mark starts clean) grows the process by about the checkpoint's size, not twice it.
 * The bound is a ratio, not a timing. A loader that kept a second copy of every tensor measures
 * about 2x (checked by hand against a patched readWeightVariables; see the report in the commit).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeShardedSafetensors } from '../../src/io/checkpoint.js';
import type { TensorInput } from '../../src/io/safetensors.js';
import type { LoadMemoryReport } from '../../src/models/load-memory.js';
import { fixture, tempDir } from '../helpers.js';
import { runCli } from '../cli/run-cli.js';

/** Peak resident growth allowed, as a multiple of the float32 checkpoint's size on disk. */
const MAX_GROWTH = 1.5;

function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(seed * 7919 + i) * 0.05;
  return a;
}

async function loadReport(dir: string, mode: 'model' | 'tensors'): Promise<LoadMemoryReport> {
  const r = await runCli(['inspect', dir, '--load', '--load-mode', mode, '--json', '--no-tensors'], { timeoutMs: 120000 });
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { loadMemory: LoadMemoryReport }).loadMemory;
}

function check(rep: LoadMemoryReport, what: string): string {
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);
  const line = `${what}: ${mb(rep.diskBytes)} MiB on disk, ${mb(rep.weightBytes)} MiB of weights, peak growth ${mb(rep.peakGrowthBytes)} MiB = ${(rep.peakGrowthBytes / rep.diskBytes).toFixed(2)}x disk (sampled ${mb(rep.sampledPeakGrowthBytes)}, high-water ${rep.maxRssGrowthBytes === null ? 'not raised' : mb(rep.maxRssGrowthBytes)})`;
  // the measurement sees the load at all (a broken probe would pass any upper bound)
  assert.ok(rep.maxRssGrowthBytes !== null, `${line}: the load did not raise the high-water mark`);
  assert.ok(rep.peakGrowthBytes > 0.5 * rep.weightBytes, `${line}: less growth than the weights themselves`);
  assert.ok(rep.peakGrowthBytes < MAX_GROWTH * rep.diskBytes, `${line}: over ${MAX_GROWTH}x the size on disk`);
  return line;
}

test('loading every tensor of a sharded float32 checkpoint holds it once', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const tensors: Record<string, TensorInput> = {};
    // 40 MiB: 20 tensors of 512 x 1024 float32, in 16 MiB shards
    for (let i = 0; i < 20; i++) tensors[`blocks.${i}.weight`] = { dtype: 'F32', shape: [512, 1024], data: filled(512 * 1024, i) };
    const written = await writeShardedSafetensors(dir, tensors, { maxShardBytes: 16 * 2 ** 20 });
    assert.equal(written.files.length, 3);
    const rep = await loadReport(dir, 'tensors');
    assert.equal(rep.loaded, '20 tensors');
    assert.equal(rep.weightBytes, written.totalSize, 'tfjs holds exactly one float32 copy of the data');
    t.diagnostic(check(rep, 'tensors'));
  } finally {
    await cleanup();
  }
});

test('loading a text decoder checkpoint as a model holds its weights once', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const H = 384;
    const I = 1024;
    const V = 426; // the llava fixture tokenizer's vocabulary
    const layers = 4;
    const tensors: Record<string, TensorInput> = {};
    let seed = 0;
    const put = (name: string, shape: number[]) => (tensors[name] = { dtype: 'F32', shape, data: filled(shape.reduce((a, b) => a * b, 1), seed++) });
    put('model.embed_tokens.weight', [V, H]);
    put('model.norm.weight', [H]);
    put('lm_head.weight', [V, H]);
    for (let l = 0; l < layers; l++) {
      const p = `model.layers.${l}.`;
      put(`${p}input_layernorm.weight`, [H]);
      put(`${p}post_attention_layernorm.weight`, [H]);
      for (const x of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) put(`${p}self_attn.${x}.weight`, [H, H]);
      put(`${p}mlp.gate_proj.weight`, [I, H]);
      put(`${p}mlp.up_proj.weight`, [I, H]);
      put(`${p}mlp.down_proj.weight`, [H, I]);
    }
    const written = await writeShardedSafetensors(dir, tensors);
    const config = {
      model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: H, intermediate_size: I, num_hidden_layers: layers,
      num_attention_heads: 6, num_key_value_heads: 6, vocab_size: V, rms_norm_eps: 1e-6, max_position_embeddings: 256, tie_word_embeddings: false,
    };
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) await fsp.copyFile(fixture('llava', 'llava-tiny', f), path.join(dir, f));
    const rep = await loadReport(dir, 'model');
    assert.equal(rep.loaded, 'llama model');
    // lm_head is not read by an embedding model
    assert.equal(rep.weightBytes, written.totalSize - V * H * 4);
    t.diagnostic(check(rep, 'model'));
  } finally {
    await cleanup();
  }
});
