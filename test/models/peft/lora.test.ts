/**
 * LoRA on the tiny decoders: which layers are adapted, initialisation, freezing, scaling, dropout,
 * and merging (the merged model equals the adapted one, and reloads as a plain HF checkpoint).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tf, type Tensor } from '../../../src/runtime/tf.js';
import { Rng } from '../../../src/runtime/rng.js';
import { loadTextDecoder, type LoadedTextDecoder } from '../../../src/models/text/load.js';
import { poolEmbeddings } from '../../../src/models/pooling.js';
import { writeShardedSafetensors } from '../../../src/io/checkpoint.js';
import { applyLora, findLinearModules, getLoraAdapter, LoraError, matchesTarget, mergeLora, removeLora } from '../../../src/models/peft/index.js';
import { fixtureDir, maxAbsDiff, readReference } from '../fixtures.js';
import { tempDir } from '../../helpers.js';

function embed(dec: LoadedTextDecoder, name: string): Float32Array {
  const ref = readReference(name);
  return tf.tidy(() => {
    const out = dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask });
    return poolEmbeddings(out.lastHiddenState, ref.attention_mask, 'last', false);
  }).dataSync() as Float32Array;
}

test('target_modules selects layers as peft does', () => {
  const n = 'model.layers.0.self_attn.q_proj';
  assert.ok(matchesTarget(['q_proj'], n));
  assert.ok(matchesTarget(['self_attn.q_proj'], n));
  assert.ok(matchesTarget([n], n));
  assert.ok(!matchesTarget(['proj'], n), 'a list entry matches whole name components only');
  assert.ok(!matchesTarget(['_proj'], n));
  assert.ok(!matchesTarget('q_proj', n), 'a string is a regular expression over the whole name');
  assert.ok(matchesTarget('.*\\.(q|v)_proj', n));
  assert.ok(matchesTarget(String.raw`model\.layers\.0\..*q_proj`, n));
  assert.ok(!matchesTarget(String.raw`model\.layers\.1\..*q_proj`, n));
  assert.ok(matchesTarget('all-linear', n));
});

test('applyLora: chosen layers, peft init, frozen base, identity at start', async () => {
  const dec = await loadTextDecoder(fixtureDir('llama-tiny'));
  try {
    const before = embed(dec, 'llama-tiny');
    assert.equal(findLinearModules(dec).size, 2 * 7);
    const adapter = applyLora(dec, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'], rng: new Rng(7) });
    assert.deepEqual(
      adapter.layers.map((l) => l.moduleName),
      ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj'],
    );
    assert.equal(adapter.scaling, 2);
    for (const l of adapter.layers) {
      const [out, inDim] = l.linear.weight.shape as [number, number];
      assert.deepEqual(l.loraA.shape, [4, inDim]);
      assert.deepEqual(l.loraB.shape, [out, 4]);
      const a = l.loraA.dataSync();
      const bound = 1 / Math.sqrt(inDim);
      assert.ok(a.every((v) => Math.abs(v) <= bound), 'kaiming-uniform(a=sqrt(5)) stays within 1/sqrt(in)');
      assert.ok(Math.max(...a.map(Math.abs)) > 0.8 * bound, 'and spans most of it');
      assert.ok(l.loraB.dataSync().every((v) => v === 0));
      assert.ok(l.loraA.trainable && l.loraB.trainable);
    }
    assert.ok([...dec.weights.values()].every((v) => !v.trainable), 'base weights are frozen');
    assert.equal(adapter.numParameters, 2 * (4 * 32 + 32 * 4) + 2 * (4 * 32 + 16 * 4));
    assert.equal(maxAbsDiff(embed(dec, 'llama-tiny'), before), 0, 'B = 0: the adapted model starts equal to the base');
    // Same seed, same A.
    const a0 = adapter.layers[0]!.loraA.dataSync().slice();
    removeLora(dec);
    assert.ok([...dec.weights.values()].every((v) => v.trainable), 'removeLora restores the trainable flags');
    assert.equal(dec.layers[0]!.attention.q!.delta, null);
    const again = applyLora(dec, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'], rng: new Rng(7) });
    assert.deepEqual(again.layers[0]!.loraA.dataSync(), a0);
    assert.throws(() => applyLora(dec, { r: 4, alpha: 8, targetModules: ['q_proj'] }), /already has a LoRA adapter/);
    removeLora(dec);
  } finally {
    dec.dispose();
  }
});

test('applyLora: all-linear, fused Phi-3 projections, rsLoRA, bad options', async () => {
  const dec = await loadTextDecoder(fixtureDir('phi3-tiny'));
  try {
    const all = applyLora(dec, { r: 2, alpha: 4, targetModules: 'all-linear' });
    assert.deepEqual(all.targetModules, ['down_proj', 'gate_up_proj', 'o_proj', 'qkv_proj']);
    assert.equal(all.layers.length, 8);
    removeLora(dec);
    const fused = applyLora(dec, { r: 4, alpha: 6, useRslora: true, targetModules: ['qkv_proj', 'gate_up_proj'] });
    assert.equal(fused.scaling, 3);
    const qkv = fused.layers[0]!;
    assert.equal(qkv.moduleName, 'model.layers.0.self_attn.qkv_proj');
    assert.deepEqual(qkv.loraB.shape, [(2 + 2 * 1) * 16, 4]);
    removeLora(dec);
    assert.throws(() => applyLora(dec, { r: 2, alpha: 4, targetModules: ['nothing'] }), (e: unknown) => e instanceof LoraError && /matches none/.test(e.message));
    assert.throws(() => applyLora(dec, { r: 0, alpha: 4, targetModules: ['qkv_proj'] }), /rank/);
    assert.throws(() => applyLora(dec, { r: 2, alpha: 4, dropout: 1, targetModules: ['qkv_proj'] }), /lora_dropout/);
    assert.throws(() => applyLora(dec, { r: 2, alpha: 4, targetModules: '(' }), /regular expression/);
    assert.equal(getLoraAdapter(dec), undefined);
  } finally {
    dec.dispose();
  }
});

function randomizeB(adapter: ReturnType<typeof applyLora>, seed: number): void {
  const rng = new Rng(seed);
  for (const l of adapter.layers) {
    const t = tf.tensor(rng.fillNormal(new Float32Array(l.loraB.size), 0, 0.2), l.loraB.shape);
    l.loraB.assign(t);
    t.dispose();
  }
}

test('dropout acts on the branch in training mode only, reproducibly from the seed', async () => {
  const dec = await loadTextDecoder(fixtureDir('llama-tiny'));
  try {
    const base = embed(dec, 'llama-tiny');
    const adapter = applyLora(dec, { r: 4, alpha: 8, dropout: 0.5, targetModules: 'all-linear', rng: new Rng(3) });
    randomizeB(adapter, 1);
    const evalOut = embed(dec, 'llama-tiny');
    assert.ok(maxAbsDiff(evalOut, base) > 1e-3);
    assert.equal(maxAbsDiff(embed(dec, 'llama-tiny'), evalOut), 0, 'eval mode is deterministic');
    adapter.train();
    const state = adapter.dropoutRng.getState();
    const t1 = embed(dec, 'llama-tiny');
    const t2 = embed(dec, 'llama-tiny');
    assert.ok(maxAbsDiff(t1, evalOut) > 1e-3, 'dropout changes the output');
    assert.ok(maxAbsDiff(t1, t2) > 1e-4, 'fresh masks each call');
    adapter.dropoutRng.setState(state);
    assert.equal(maxAbsDiff(embed(dec, 'llama-tiny'), t1), 0, 'same rng state, same masks');
    adapter.eval();
    removeLora(dec);
    assert.equal(maxAbsDiff(embed(dec, 'llama-tiny'), base), 0);
  } finally {
    dec.dispose();
  }
});

for (const name of ['llama-tiny', 'phi3-tiny'] as const) {
  test(`${name}: mergeLora equals the adapted model and exports as a plain HF checkpoint`, async (t) => {
    const dec = await loadTextDecoder(fixtureDir(name));
    const { dir, cleanup } = await tempDir('unime-lora-merge-');
    let reloaded: LoadedTextDecoder | undefined;
    try {
      const adapter = applyLora(dec, { r: 4, alpha: 16, targetModules: 'all-linear', rng: new Rng(11) });
      randomizeB(adapter, 5);
      const adapted = embed(dec, name);
      const baseQ = (dec.layers[0]!.attention.q ?? dec.layers[0]!.attention.qkv)!.weight.dataSync().slice();
      const merged = mergeLora(dec);
      assert.equal(merged.length, adapter.layers.length);
      assert.equal(getLoraAdapter(dec), undefined);
      assert.ok(findLinearModules(dec).size > 0 && [...findLinearModules(dec).values()].every((l) => l.delta === null));
      assert.ok([...dec.weights.values()].every((v) => v.trainable), 'trainable flags restored');
      assert.ok(maxAbsDiff((dec.layers[0]!.attention.q ?? dec.layers[0]!.attention.qkv)!.weight, baseQ) > 1e-4, 'weights changed');
      const errMerged = maxAbsDiff(embed(dec, name), adapted);
      assert.ok(errMerged < 1e-5, `merged differs from adapted by ${errMerged}`);
      // Export with HF key names and reload through the ordinary loader.
      const prefix = dec.source.prefix;
      const tensors = [...dec.weights].map(([k, v]) => [prefix + k, { dtype: 'F32' as const, shape: v.shape, data: v.dataSync() as Float32Array }] as const);
      await writeShardedSafetensors(dir, tensors, { metadata: { format: 'pt' } });
      await fsp.copyFile(path.join(fixtureDir(name), 'config.json'), path.join(dir, 'config.json'));
      reloaded = await loadTextDecoder(dir);
      const errReload = maxAbsDiff(embed(reloaded, name), adapted);
      assert.ok(errReload < 1e-5, `reloaded merged model differs by ${errReload}`);
      t.diagnostic(`${name}: merged vs adapted max abs err ${errMerged.toExponential(1)}, reloaded ${errReload.toExponential(1)}`);
      assert.throws(() => mergeLora(dec), /no LoRA adapter/);
    } finally {
      dec.dispose();
      reloaded?.dispose();
      await cleanup();
    }
  });
}

test('forward and backward leave no tensors behind', async () => {
  const dec = await loadTextDecoder(fixtureDir('llama-tiny'));
  try {
    const adapter = applyLora(dec, { r: 2, alpha: 4, dropout: 0.1, targetModules: ['q_proj'] });
    adapter.train();
    const ref = readReference('llama-tiny');
    const run = () => {
      const { value, grads } = tf.variableGrads(() => tf.sum(dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask }).lastHiddenState) as tf.Scalar);
      value.dispose();
      for (const g of Object.values(grads)) (g as Tensor).dispose();
    };
    run();
    const n = tf.memory().numTensors;
    run();
    assert.equal(tf.memory().numTensors, n);
    removeLora(dec);
    const base = tf.memory().numTensors;
    applyLora(dec, { r: 2, alpha: 4, targetModules: 'all-linear' });
    assert.equal(tf.memory().numTensors, base + 2 * 14, 'one tensor per lora_A / lora_B');
    mergeLora(dec);
    assert.equal(tf.memory().numTensors, base, 'merging frees the adapter');
  } finally {
    dec.dispose();
  }
});
