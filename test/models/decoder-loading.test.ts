/**
 * Loading: nested text_config + prefixes, clear errors for weights and configs that do not match,
 * no leaked tensors, and gradients that agree with finite differences.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import { openCheckpoint, writeShardedSafetensors } from '../../src/io/checkpoint.js';
import { type TensorInput, writeSafetensors } from '../../src/io/safetensors.js';
import { tf } from '../../src/runtime/tf.js';
import { countLeaks } from '../../src/runtime/memory.js';
import { loadTextDecoder, WeightMismatchError } from '../../src/models/text/load.js';
import { ModelConfigError } from '../../src/models/text/config.js';
import { poolEmbeddings } from '../../src/models/pooling.js';
import { registeredModelTypes } from '../../src/models/registry.js';
import { DECODER_FIXTURES, fixtureDir, maxAbsDiffMasked, readReference } from './fixtures.js';

const isErr = (cls: typeof UnimeError, ...res: RegExp[]) => (e: unknown) => {
  assert.ok(e instanceof cls, `not a ${cls.name}: ${e}`);
  for (const re of res) assert.match((e as Error).message, re);
  return true;
};

/** Copy a fixture into a temp dir, optionally rewriting its tensors (by full name) and config. */
async function variant(
  name: string,
  edit: { tensors?: (t: Map<string, TensorInput>) => Map<string, TensorInput>; config?: (c: Record<string, unknown>) => Record<string, unknown>; weightsFile?: string },
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const tmp = await tempDir('unime-models-');
  const src = fixtureDir(name);
  const ck = await openCheckpoint(src);
  let tensors = new Map<string, TensorInput>();
  for (const n of ck.names) {
    const info = ck.info(n);
    tensors.set(n, { dtype: info.dtype, shape: info.shape, data: await ck.readFloat32(n) });
  }
  await ck.close();
  if (edit.tensors) tensors = edit.tensors(tensors);
  await writeSafetensors(path.join(tmp.dir, edit.weightsFile ?? 'model.safetensors'), tensors);
  let cfg = JSON.parse(await fsp.readFile(path.join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  if (edit.config) cfg = edit.config(cfg);
  await fsp.writeFile(path.join(tmp.dir, 'config.json'), JSON.stringify(cfg));
  return tmp;
}

test('the registry knows the five decoder families', () => {
  assert.deepEqual(registeredModelTypes('text-decoder'), ['llama', 'mistral', 'phi3', 'qwen2', 'qwen3']);
});

test('loads from a multimodal checkpoint: text_config + language_model.model. prefix, other tensors ignored', async () => {
  const tmp = await variant('qwen2-tiny', {
    tensors: (t) => {
      const out = new Map<string, TensorInput>();
      for (const [n, v] of t) out.set(n.startsWith('model.') ? `language_model.${n}` : n, v);
      out.set('vision_tower.patch_embed.weight', { dtype: 'F32', shape: [2, 2], data: new Float32Array(4) });
      return out;
    },
    config: (c) => ({ model_type: 'llava_onevision', text_config: c, vision_config: { model_type: 'siglip_vision_model' } }),
  });
  try {
    const dec = await loadTextDecoder(tmp.dir);
    try {
      assert.equal(dec.source.prefix, 'language_model.model.');
      assert.equal(dec.source.configField, 'text_config.');
      assert.equal(dec.config.modelType, 'qwen2');
      const ref = readReference('qwen2-tiny');
      const err = tf.tidy(() => maxAbsDiffMasked(dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask }).lastHiddenState, ref.last_hidden_state, ref.attention_mask));
      assert.ok(err < 1e-4);
    } finally {
      dec.dispose();
    }
    // An explicit prefix that does not hold the decoder: every tensor is missing.
    await assert.rejects(loadTextDecoder(tmp.dir, { prefix: 'model.' }), isErr(WeightMismatchError, /missing \d+ tensors: model\.embed_tokens\.weight/));
  } finally {
    await tmp.cleanup();
  }
});

test('a missing tensor is named, with the file', async () => {
  const tmp = await variant('llama-tiny', {
    tensors: (t) => {
      t.delete('model.layers.1.self_attn.k_proj.weight');
      return t;
    },
  });
  try {
    await assert.rejects(
      loadTextDecoder(tmp.dir),
      isErr(WeightMismatchError, /model\.safetensors/, /missing 1 tensor: model\.layers\.1\.self_attn\.k_proj\.weight/, /config\.json/),
    );
  } finally {
    await tmp.cleanup();
  }
});

test('a wrong shape is named with both shapes and the file', async () => {
  const tmp = await variant('phi3-tiny', {
    tensors: (t) => {
      t.set('model.layers.0.mlp.gate_up_proj.weight', { dtype: 'F32', shape: [64, 32], data: new Float32Array(64 * 32) });
      return t;
    },
  });
  try {
    await assert.rejects(
      loadTextDecoder(tmp.dir),
      isErr(WeightMismatchError, /model\.safetensors: model\.layers\.0\.mlp\.gate_up_proj\.weight/, /is \[64, 32\] in model\.safetensors, the config implies \[128, 32\]/),
    );
  } finally {
    await tmp.cleanup();
  }
});

test('unexpected tensors under the prefix fail unless strict is off', async () => {
  const tmp = await variant('mistral-tiny', {
    tensors: (t) => {
      t.set('model.layers.0.self_attn.q_proj.bias', { dtype: 'F32', shape: [32], data: new Float32Array(32) });
      t.set('model.layers.0.self_attn.rotary_emb.inv_freq', { dtype: 'F32', shape: [4], data: new Float32Array(4) });
      return t;
    },
  });
  try {
    await assert.rejects(loadTextDecoder(tmp.dir), isErr(WeightMismatchError, /1 unexpected tensor: model\.layers\.0\.self_attn\.q_proj\.bias/, /strict: false/));
    const dec = await loadTextDecoder(tmp.dir, { strict: false });
    dec.dispose();
  } finally {
    await tmp.cleanup();
  }
});

test('an unknown rope type names config.json and the field', async () => {
  const tmp = await variant('llama-tiny', { config: (c) => ({ ...c, rope_scaling: { rope_type: 'yarn2', factor: 2.0 } }) });
  try {
    await assert.rejects(
      loadTextDecoder(tmp.dir),
      isErr(ModelConfigError, /config\.json: rope_scaling\.rope_type: RoPE scaling type "yarn2" is not supported \(supported: default, linear, dynamic, llama3, longrope/),
    );
  } finally {
    await tmp.cleanup();
  }
  // The legacy "type" key, inside a nested text_config.
  const tmp2 = await variant('mistral-tiny', {
    config: (c) => ({ model_type: 'llava_next', text_config: { ...c, rope_scaling: { type: 'ntk-by-parts' } } }),
  });
  try {
    await assert.rejects(loadTextDecoder(tmp2.dir), isErr(ModelConfigError, /config\.json: text_config\.rope_scaling\.type: RoPE scaling type "ntk-by-parts"/));
  } finally {
    await tmp2.cleanup();
  }
});

test('config problems name the field: unknown model_type, bad head count, llama3 without its keys', async () => {
  const cases: [string, (c: Record<string, unknown>) => Record<string, unknown>, RegExp][] = [
    ['llama-tiny', (c) => ({ ...c, model_type: 'gpt2' }), /config\.json: model_type: "gpt2" is not a supported text decoder \(supported: llama, mistral, phi3, qwen2, qwen3\)/],
    ['llama-tiny', (c) => ({ ...c, num_key_value_heads: 3 }), /config\.json: num_key_value_heads: must divide num_attention_heads \(4\), got 3/],
    ['llama-tiny', (c) => ({ ...c, rope_scaling: { rope_type: 'llama3', factor: 8.0 } }), /rope_scaling\.low_freq_factor: is required for rope type "llama3"/],
    ['llama-tiny', (c) => ({ ...c, hidden_act: 'gelu' }), /hidden_act: "gelu" is not supported/],
    ['phi3-tiny', (c) => ({ ...c, rope_scaling: { type: 'longrope', short_factor: [1, 2], long_factor: [1, 2, 3, 4] } }), /rope_scaling\.short_factor: must have 4 entries/],
  ];
  for (const [name, edit, re] of cases) {
    const tmp = await variant(name, { config: edit });
    try {
      await assert.rejects(loadTextDecoder(tmp.dir), isErr(ModelConfigError, re));
    } finally {
      await tmp.cleanup();
    }
  }
});

test('loading leaves only the weights; forward under tidy leaks nothing; dispose frees the weights', async () => {
  for (const name of DECODER_FIXTURES) {
    const before = tf.memory().numTensors;
    const dec = await loadTextDecoder(fixtureDir(name));
    assert.equal(tf.memory().numTensors - before, dec.weights.size, `${name}: loading kept extra tensors`);
    const ref = readReference(name);
    const { leaked } = await countLeaks(() => {
      tf.tidy(() => {
        const out = dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask, outputHiddenStates: true });
        poolEmbeddings(out.lastHiddenState, ref.attention_mask);
      });
    });
    assert.equal(leaked, 0, `${name}: forward leaked ${leaked} tensors`);
    // Without tidy, only the returned tensors remain.
    const { leaked: leaked2, result } = await countLeaks(() => dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask, outputHiddenStates: true }));
    assert.equal(leaked2, 0);
    tf.dispose([result.lastHiddenState, ...(result.hiddenStates ?? [])]);
    dec.dispose();
    assert.equal(tf.memory().numTensors, before, `${name}: dispose left tensors`);
  }
});

test('sequences longer than the sliding window are refused', async () => {
  const dec = await loadTextDecoder(fixtureDir('mistral-tiny'));
  try {
    assert.equal(dec.config.slidingWindow, 64);
    const ids = [Array.from({ length: 65 }, (_, i) => i % 100)];
    assert.throws(() => dec.forward({ inputIds: ids }), isErr(UnimeError, /sequence length 65 exceeds the model's sliding window \(64\)/));
  } finally {
    dec.dispose();
  }
});

test('gradients of a loss on the pooled embedding match finite differences', async (t) => {
  for (const [name, weight] of [
    ['qwen3-tiny', 'layers.0.self_attn.q_norm.weight'],
    ['phi3-tiny', 'layers.1.self_attn.qkv_proj.weight'],
    ['llama3-tiny', 'embed_tokens.weight'],
  ] as const) {
    const dec = await loadTextDecoder(fixtureDir(name));
    try {
      const ref = readReference(name);
      const w = dec.weights.get(weight)!;
      const target = tf.tidy(() => tf.randomNormal([3, dec.config.hiddenSize], 0, 1, 'float32', 7));
      const loss = () =>
        tf.tidy(() => {
          const out = dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask });
          return tf.sum(tf.mul(poolEmbeddings(out.lastHiddenState, ref.attention_mask), target)) as tf.Scalar;
        });
      const { value, grads } = tf.variableGrads(loss, [w]);
      const g = grads[w.name]!.dataSync();
      value.dispose();
      tf.dispose(grads);
      // the element with the largest gradient (for the embedding, a row of a token that is used)
      let k = 0;
      for (let i = 0; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[k]!)) k = i;
      assert.ok(Math.abs(g[k]!) > 1e-4, `${name}: gradient of ${weight} is zero`);
      const orig = w.dataSync().slice();
      const h = 1e-2;
      const at = (delta: number): number => {
        const v = orig.slice();
        v[k] = v[k]! + delta;
        tf.tidy(() => w.assign(tf.tensor(v, w.shape)));
        const l = loss();
        const x = l.dataSync()[0]!;
        l.dispose();
        return x;
      };
      const fd = (at(h) - at(-h)) / (2 * h);
      tf.tidy(() => w.assign(tf.tensor(orig, w.shape)));
      target.dispose();
      const rel = Math.abs(fd - g[k]!) / Math.max(Math.abs(fd), Math.abs(g[k]!));
      t.diagnostic(`${name} d loss / d ${weight}[${k}]: tf.grad ${g[k]!.toPrecision(6)}, central difference ${fd.toPrecision(6)} (rel. diff ${rel.toExponential(1)})`);
      assert.ok(rel < 1e-3, `${name} ${weight}[${k}]: analytic ${g[k]} vs finite difference ${fd}`);
    } finally {
      dec.dispose();
    }
  }
});

test('explicit position ids override the mask-derived ones', async () => {
  const dec = await loadTextDecoder(fixtureDir('llama-tiny'));
  try {
    const ref = readReference('llama-tiny');
    tf.tidy(() => {
      const derived = [[0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 1, 2, 3], [0, 0, 1, 2, 3, 4, 5]];
      const a = dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask }).lastHiddenState;
      const b = dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask, positionIds: derived }).lastHiddenState;
      assert.equal(maxAbsDiffMasked(a, Array.from(b.dataSync()), ref.attention_mask), 0);
      const arange = ref.input_ids.map((r) => r.map((_, j) => j));
      const c = dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask, positionIds: arange }).lastHiddenState;
      // RoPE scores depend on position differences only, so shifting a left-padded row's positions
      // (what a plain transformers forward does) changes its outputs only by rounding ...
      assert.ok(maxAbsDiffMasked(c, Array.from(a.dataSync()), ref.attention_mask) < 1e-5);
      // ... while spreading them out changes the row
      const spread = ref.input_ids.map((r) => r.map((_, j) => 2 * j));
      const d = dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask, positionIds: spread }).lastHiddenState;
      assert.ok(maxAbsDiffMasked(d, Array.from(a.dataSync()), ref.attention_mask) > 1e-3);
      assert.throws(() => dec.forward({ inputIds: ref.input_ids, positionIds: [[0, 1]] }), /positionIds must be \[3, 7\]/);
    });
  } finally {
    dec.dispose();
  }
});

test('loads a sharded checkpoint, and a .safetensors file named directly', async () => {
  const ref = readReference('phi3-tiny');
  const tmp = await tempDir('unime-models-');
  try {
    const ck = await openCheckpoint(fixtureDir('phi3-tiny'));
    const tensors = new Map<string, TensorInput>();
    for (const n of ck.names) tensors.set(n, { dtype: 'F32', shape: ck.info(n).shape, data: await ck.readFloat32(n) });
    await ck.close();
    const written = await writeShardedSafetensors(tmp.dir, tensors, { maxShardBytes: 20_000 });
    assert.ok(written.files.length > 2);
    await fsp.copyFile(path.join(fixtureDir('phi3-tiny'), 'config.json'), path.join(tmp.dir, 'config.json'));
    for (const target of [tmp.dir, path.join(fixtureDir('phi3-tiny'), 'model.safetensors')]) {
      const dec = await loadTextDecoder(target);
      try {
        const err = tf.tidy(() => maxAbsDiffMasked(dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask }).lastHiddenState, ref.last_hidden_state, ref.attention_mask));
        assert.ok(err < 1e-4, `${target}: off by ${err}`);
      } finally {
        dec.dispose();
      }
    }
  } finally {
    await tmp.cleanup();
  }
});
