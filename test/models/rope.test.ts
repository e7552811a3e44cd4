import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import type { RopeConfig } from '../../src/models/text/config.js';
import { applyRope, ropeInverseFrequencies, ropeTables } from '../../src/models/text/rope.js';
import { registerModel, registeredModelTypes, modelEntry } from '../../src/models/registry.js';
import { buildLlamaConfig } from '../../src/models/text/builders.js';
import { UnimeError } from '../../src/errors.js';

const base: RopeConfig = { kind: 'default', theta: 10000, rotaryDim: 8, maxPositionEmbeddings: 32 };
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol * Math.max(1, Math.abs(b[i]!)), `[${i}] ${a[i]} vs ${b[i]}`);
};

test('default and linear frequencies', () => {
  const want = [0, 2, 4, 6].map((k) => 1 / 10000 ** (k / 8));
  close(ropeInverseFrequencies(base, 10).invFreq, want);
  close(ropeInverseFrequencies({ ...base, kind: 'linear', factor: 4 }, 10).invFreq, want.map((f) => f / 4));
});

test('llama3 keeps high frequencies, divides low ones, and blends in between', () => {
  const r: RopeConfig = { ...base, kind: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 };
  const plain = ropeInverseFrequencies(base, 1).invFreq;
  const got = ropeInverseFrequencies(r, 1).invFreq;
  // wavelengths 2π/f: 6.3 (< 16: kept), 62.8 (between 16 and 64: blended), 628 and 6283 (> 64: divided)
  close([got[0]!], [plain[0]!]);
  const s = (64 / ((2 * Math.PI) / plain[1]!) - 1) / 3;
  close([got[1]!], [((1 - s) * plain[1]!) / 8 + s * plain[1]!]);
  close([got[2]!, got[3]!], [plain[2]! / 8, plain[3]! / 8]);
});

test('longrope switches to long factors past the original context and scales cos/sin', () => {
  const r: RopeConfig = { ...base, kind: 'longrope', shortFactor: [1, 1, 2, 2], longFactor: [1, 3, 5, 7], originalMaxPositionEmbeddings: 16, attentionScaling: 1.2 };
  const plain = ropeInverseFrequencies(base, 1).invFreq;
  const short = ropeInverseFrequencies(r, 16);
  const long = ropeInverseFrequencies(r, 17);
  close(short.invFreq, [plain[0]!, plain[1]!, plain[2]! / 2, plain[3]! / 2]);
  close(long.invFreq, [plain[0]!, plain[1]! / 3, plain[2]! / 5, plain[3]! / 7]);
  assert.equal(short.scale, 1.2);
  tf.tidy(() => {
    const { cos } = ropeTables(r, new Int32Array([0]), 1, 1);
    close(cos.dataSync(), new Array(8).fill(1.2));
  });
});

test('dynamic NTK leaves frequencies alone within the context and lowers them past it', () => {
  const r: RopeConfig = { ...base, kind: 'dynamic', factor: 2 };
  close(ropeInverseFrequencies(r, 32).invFreq, ropeInverseFrequencies(base, 32).invFreq);
  const theta = 10000 * ((2 * 64) / 32 - 1) ** (8 / 6);
  close(ropeInverseFrequencies(r, 64).invFreq, [0, 2, 4, 6].map((k) => 1 / theta ** (k / 8)));
});

test('applyRope rotates pairs (i, i + d/2) and passes the non-rotary dims through', () => {
  tf.tidy(() => {
    const r: RopeConfig = { ...base, rotaryDim: 2, theta: 1 };
    // inv_freq = [1]; at position p the pair (x0, x1) rotates by p radians
    const { cos, sin } = ropeTables(r, new Int32Array([0, 1]), 1, 2);
    const x = tf.tensor4d([[[[1, 0, 5, 6], [1, 0, 5, 6]]]]); // [1, 1, 2, 4]
    const y = applyRope(x, cos, sin).arraySync() as number[][][][];
    close(y[0]![0]![0]!, [1, 0, 5, 6]);
    close(y[0]![0]![1]!, [Math.cos(1), Math.sin(1), 5, 6]);
  });
});

test('the registry is open for later model types and refuses silent overrides', () => {
  assert.ok(registeredModelTypes().includes('llama'));
  assert.throws(() => registerModel({ kind: 'text-decoder', modelType: 'llama', hfClass: 'X', buildConfig: buildLlamaConfig }), (e: unknown) => e instanceof UnimeError && /already registered/.test(e.message));
  registerModel({ kind: 'text-decoder', modelType: 'test_llama_alias', hfClass: 'LlamaModel', buildConfig: buildLlamaConfig });
  assert.equal(modelEntry('test_llama_alias')?.hfClass, 'LlamaModel');
});

test('builders apply the transformers class defaults for fields a nested text_config leaves out', () => {
  // llava-v1.6-mistral's text_config carries only a few fields
  const entry = modelEntry('mistral')!;
  const cfg = entry.buildConfig(
    { model_type: 'mistral', intermediate_size: 14336, max_position_embeddings: 32768, num_key_value_heads: 8, rms_norm_eps: 1e-5, rope_theta: 1e6, sliding_window: null, vocab_size: 32064 },
    { file: 'config.json', fieldPrefix: 'text_config.' },
  );
  assert.equal(cfg.hiddenSize, 4096);
  assert.equal(cfg.numLayers, 32);
  assert.equal(cfg.numHeads, 32);
  assert.equal(cfg.headDim, 128);
  assert.equal(cfg.slidingWindow, null);
  assert.equal(cfg.rope.theta, 1e6);
  const qwen3 = modelEntry('qwen3')!.buildConfig({ model_type: 'qwen3', hidden_size: 1024, num_attention_heads: 16, num_key_value_heads: 8 }, { file: 'c.json', fieldPrefix: '' });
  assert.equal(qwen3.headDim, 128);
  assert.equal(qwen3.qkNorm, true);
  const phi3 = modelEntry('phi3')!.buildConfig({ model_type: 'phi3', rope_scaling: { type: 'su', short_factor: new Array(48).fill(1), long_factor: new Array(48).fill(2) }, original_max_position_embeddings: 4096, max_position_embeddings: 131072 }, { file: 'c.json', fieldPrefix: '' });
  assert.equal(phi3.rope.kind, 'longrope');
  assert.ok(Math.abs(phi3.rope.attentionScaling! - Math.sqrt(1 + Math.log(32) / Math.log(4096))) < 1e-12);
});
