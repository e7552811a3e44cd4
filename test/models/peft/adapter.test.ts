/**
 * PEFT-layout adapters against the independent PyTorch reference of
 * tools/fixtures/make_lora_fixtures.py: loading reproduces its outputs and LoRA gradients, saving
 * round-trips its file byte for byte, and malformed adapters are reported by file and key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { tf } from '../../../src/runtime/tf.js';
import { Rng } from '../../../src/runtime/rng.js';
import { loadTextDecoder } from '../../../src/models/text/load.js';
import { poolEmbeddings } from '../../../src/models/pooling.js';
import { SafetensorsFile, writeSafetensors, type TensorInput } from '../../../src/io/safetensors.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, applyLora, getLoraAdapter, loadLoraAdapter, LoraError, peftKey, removeLora, saveLoraAdapter } from '../../../src/models/peft/index.js';
import { fixtureDir, maxAbsDiff, maxAbsDiffMasked } from '../fixtures.js';
import { fixture, tempDir } from '../../helpers.js';

interface LoraReference {
  base: string;
  modules: string[];
  scaling: number;
  input_ids: number[][];
  attention_mask: number[][];
  last_hidden_state: number[];
  pooled_last_token: number[];
  probe: number[];
  loss: number;
  grads: Record<string, number[]>;
  torch_version: string;
}

const ADAPTERS = ['llama-tiny-lora', 'phi3-tiny-lora'] as const;
const TOL = 1e-4;

function adapterDir(name: string): string {
  return fixture('peft', name);
}

function readRef(name: string): LoraReference {
  return JSON.parse(readFileSync(path.join(adapterDir(name), 'reference.json'), 'utf8')) as LoraReference;
}

async function readTensors(file: string): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const f = await SafetensorsFile.open(file);
  try {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const n of f.names) out.set(n, { shape: f.info(n).shape.map(Number), data: await f.readFloat32(n) });
    return out;
  } finally {
    await f.close();
  }
}

for (const name of ADAPTERS) {
  test(`${name}: outputs and LoRA gradients match the PyTorch reference`, async (t) => {
    const ref = readRef(name);
    const dec = await loadTextDecoder(fixtureDir(ref.base));
    try {
      const adapter = await loadLoraAdapter(adapterDir(name), dec);
      assert.deepEqual(adapter.layers.map((l) => l.moduleName).sort(), ref.modules);
      assert.ok(Math.abs(adapter.scaling - ref.scaling) < 1e-12);
      assert.equal(adapter.training, false);
      const mask = ref.attention_mask;
      const errs = tf.tidy(() => {
        const out = dec.forward({ inputIds: ref.input_ids, attentionMask: mask });
        return {
          last: maxAbsDiffMasked(out.lastHiddenState, ref.last_hidden_state, mask),
          pooled: maxAbsDiff(poolEmbeddings(out.lastHiddenState, mask, 'last'), ref.pooled_last_token),
        };
      });
      // No variable list: every trainable variable gets a gradient, and only the LoRA ones are trainable.
      const probe = tf.tensor2d(ref.probe, [ref.input_ids.length, dec.config.hiddenSize]);
      const { value, grads } = tf.variableGrads(() => {
        const out = dec.forward({ inputIds: ref.input_ids, attentionMask: mask });
        return tf.sum(tf.mul(poolEmbeddings(out.lastHiddenState, mask, 'last'), probe)) as tf.Scalar;
      });
      probe.dispose();
      const lossErr = Math.abs(value.dataSync()[0]! - ref.loss);
      value.dispose();
      const loraVars = new Map(adapter.layers.flatMap((l) => [[l.loraA.name, peftKey(l.moduleName, 'A')], [l.loraB.name, peftKey(l.moduleName, 'B')]] as const));
      assert.deepEqual(Object.keys(grads).sort(), [...loraVars.keys()].sort(), 'only lora_A / lora_B receive gradients');
      let worstGrad = 0;
      for (const [varName, g] of Object.entries(grads)) {
        const key = loraVars.get(varName)!;
        const r = ref.grads[key];
        assert.ok(r, `reference has no gradient for ${key}`);
        const scale = Math.max(...r.map(Math.abs));
        assert.ok(scale > 0, `${key}: the reference gradient is zero`);
        const rel = maxAbsDiff(g, r) / scale;
        worstGrad = Math.max(worstGrad, rel);
        assert.ok(rel < TOL, `${key}: gradient off by ${rel} (relative)`);
        g.dispose();
      }
      const line = `${name}: max abs err last_hidden_state ${errs.last.toExponential(1)} pooled ${errs.pooled.toExponential(1)} loss ${lossErr.toExponential(1)}; max relative grad err ${worstGrad.toExponential(1)} over ${loraVars.size} tensors (torch ${ref.torch_version})`;
      t.diagnostic(line);
      assert.ok(errs.last < TOL && errs.pooled < TOL && lossErr < TOL, line);
    } finally {
      removeLora(dec);
      dec.dispose();
    }
  });

  test(`${name}: saving a loaded adapter reproduces the file byte for byte`, async () => {
    const ref = readRef(name);
    const dec = await loadTextDecoder(fixtureDir(ref.base));
    const { dir, cleanup } = await tempDir('unime-lora-save-');
    const dec2 = await loadTextDecoder(fixtureDir(ref.base));
    try {
      await loadLoraAdapter(adapterDir(name), dec);
      const written = await saveLoraAdapter(dir, dec, { baseModelNameOrPath: `test/fixtures/models/${ref.base}` });
      assert.equal(written.weightsPath, path.join(dir, ADAPTER_WEIGHTS));
      const ours = await readTensors(written.weightsPath);
      const theirs = await readTensors(path.join(adapterDir(name), ADAPTER_WEIGHTS));
      assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
      for (const [k, v] of theirs) {
        assert.deepEqual(ours.get(k)!.shape, v.shape, k);
        assert.deepEqual(ours.get(k)!.data, v.data, k);
      }
      const a = await fsp.readFile(written.weightsPath);
      const b = await fsp.readFile(path.join(adapterDir(name), ADAPTER_WEIGHTS));
      assert.ok(a.equals(b), 'adapter_model.safetensors is byte-identical');
      // The config carries the same LoRA settings (our lora_dropout is the file's).
      const cfgOurs = JSON.parse(await fsp.readFile(written.configPath, 'utf8')) as Record<string, unknown>;
      const cfgTheirs = JSON.parse(await fsp.readFile(path.join(adapterDir(name), ADAPTER_CONFIG), 'utf8')) as Record<string, unknown>;
      assert.deepEqual(cfgOurs, cfgTheirs);
      assert.deepEqual(Object.keys(cfgOurs), Object.keys(cfgOurs).sort(), 'keys sorted as peft writes them');
      // And it loads back to the same model.
      await loadLoraAdapter(dir, dec2);
      const mask = ref.attention_mask;
      const d = tf.tidy(() => {
        const x = poolEmbeddings(dec.forward({ inputIds: ref.input_ids, attentionMask: mask }).lastHiddenState, mask);
        const y = poolEmbeddings(dec2.forward({ inputIds: ref.input_ids, attentionMask: mask }).lastHiddenState, mask);
        return maxAbsDiff(x, y.dataSync());
      });
      assert.equal(d, 0);
    } finally {
      dec.dispose();
      dec2.dispose();
      await cleanup();
    }
  });
}

test('a fresh adapter saves in peft layout with peft key names', async () => {
  const dec = await loadTextDecoder(fixtureDir('qwen2-tiny'));
  const { dir, cleanup } = await tempDir('unime-lora-fresh-');
  try {
    applyLora(dec, { r: 8, alpha: 16, dropout: 0.05, targetModules: ['v_proj', 'q_proj'], rng: new Rng(1) });
    await saveLoraAdapter(dir, dec);
    const cfg = JSON.parse(await fsp.readFile(path.join(dir, ADAPTER_CONFIG), 'utf8')) as Record<string, unknown>;
    assert.equal(cfg.peft_type, 'LORA');
    assert.equal(cfg.task_type, 'FEATURE_EXTRACTION');
    assert.equal(cfg.r, 8);
    assert.equal(cfg.lora_alpha, 16);
    assert.equal(cfg.lora_dropout, 0.05);
    assert.deepEqual(cfg.target_modules, ['q_proj', 'v_proj']);
    assert.equal(cfg.bias, 'none');
    assert.equal(cfg.fan_in_fan_out, false);
    assert.equal(cfg.use_rslora, false);
    assert.equal(cfg.modules_to_save, null);
    assert.equal(cfg.inference_mode, true);
    assert.equal(cfg.base_model_name_or_path, fixtureDir('qwen2-tiny'));
    const tensors = await readTensors(path.join(dir, ADAPTER_WEIGHTS));
    assert.deepEqual([...tensors.keys()].sort(), [
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight',
      'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight',
      'base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight',
      'base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight',
      'base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight',
    ]);
    assert.deepEqual(tensors.get('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight')!.shape, [16, 8]);
    const f = await SafetensorsFile.open(path.join(dir, ADAPTER_WEIGHTS));
    assert.deepEqual(f.metadata, { format: 'pt' });
    await f.close();
  } finally {
    dec.dispose();
    await cleanup();
  }
});

/** Copy the llama adapter into `dir`, letting `edit` change the tensors and the config. */
async function writeVariant(dir: string, edit: (tensors: Map<string, TensorInput>, cfg: Record<string, unknown>) => void): Promise<void> {
  const src = adapterDir('llama-tiny-lora');
  const tensors = new Map<string, TensorInput>();
  for (const [k, v] of await readTensors(path.join(src, ADAPTER_WEIGHTS))) tensors.set(k, { dtype: 'F32', shape: v.shape, data: v.data });
  const cfg = JSON.parse(await fsp.readFile(path.join(src, ADAPTER_CONFIG), 'utf8')) as Record<string, unknown>;
  edit(tensors, cfg);
  await fsp.mkdir(dir, { recursive: true });
  await writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), tensors, { metadata: { format: 'pt' } });
  await fsp.writeFile(path.join(dir, ADAPTER_CONFIG), JSON.stringify(cfg));
}

test("keys with peft's in-memory adapter name ('.default.') load the same", async () => {
  const ref = readRef('llama-tiny-lora');
  const dec = await loadTextDecoder(fixtureDir('llama-tiny'));
  const { dir, cleanup } = await tempDir('unime-lora-default-');
  try {
    await writeVariant(dir, (tensors) => {
      for (const [k, v] of [...tensors]) {
        tensors.delete(k);
        tensors.set(k.replace(/\.lora_([AB])\.weight$/, '.lora_$1.default.weight'), v);
      }
    });
    await loadLoraAdapter(dir, dec);
    const err = tf.tidy(() => maxAbsDiff(poolEmbeddings(dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask }).lastHiddenState, ref.attention_mask), ref.pooled_last_token));
    assert.ok(err < TOL, `off by ${err}`);
  } finally {
    dec.dispose();
    await cleanup();
  }
});

test('adapters saved from a *Model (no "model." in the keys) are found by prefix', async () => {
  const ref = readRef('llama-tiny-lora');
  const dec = await loadTextDecoder(fixtureDir('llama-tiny'));
  const { dir, cleanup } = await tempDir('unime-lora-prefix-');
  try {
    await writeVariant(dir, (tensors) => {
      for (const [k, v] of [...tensors]) {
        tensors.delete(k);
        tensors.set(k.replace('base_model.model.model.', 'base_model.model.'), v);
      }
    });
    const adapter = await loadLoraAdapter(dir, dec);
    assert.equal(adapter.modulePrefix, '');
    assert.equal(adapter.layers[0]!.moduleName, 'layers.0.self_attn.q_proj');
    const err = tf.tidy(() => maxAbsDiff(poolEmbeddings(dec.forward({ inputIds: ref.input_ids, attentionMask: ref.attention_mask }).lastHiddenState, ref.attention_mask), ref.pooled_last_token));
    assert.ok(err < TOL, `off by ${err}`);
  } finally {
    dec.dispose();
    await cleanup();
  }
});

test('malformed adapters are refused with the file and the key, and leave the model untouched', async () => {
  const dec = await loadTextDecoder(fixtureDir('llama-tiny'));
  const { dir, cleanup } = await tempDir('unime-lora-bad-');
  const A0 = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight';
  const B0 = 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight';
  const cases: [string, (t: Map<string, TensorInput>, c: Record<string, unknown>) => void, RegExp][] = [
    ['unknown module', (t) => t.set('base_model.model.model.layers.0.self_attn.x_proj.lora_A.weight', t.get(A0)!), /not linear layers of this model: model\.layers\.0\.self_attn\.x_proj/],
    ['not a LoRA key', (t) => t.set('base_model.model.model.norm.weight', { dtype: 'F32', shape: [32], data: new Float32Array(32) }), /not LoRA weights in peft's layout.*: base_model\.model\.model\.norm\.weight/],
    ['missing B', (t) => t.delete(B0), /missing 1 LoRA tensor.*q_proj\.lora_B\.weight/],
    ['untargeted module', (t) => {
      t.set('base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight', { dtype: 'F32', shape: [4, 32], data: new Float32Array(128) });
      t.set('base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight', { dtype: 'F32', shape: [16, 4], data: new Float32Array(64) });
    }, /not selected by target_modules.*k_proj/],
    ['wrong rank', (_t, c) => (c.r = 8), /lora_A\.weight is \[4, 32\], expected \[8, 32\]/],
    ['wrong shape', (t) => t.set(A0, { dtype: 'F32', shape: [4, 16], data: new Float32Array(64) }), /q_proj\.lora_A\.weight is \[4, 16\], expected \[4, 32\]/],
    ['bias', (_t, c) => (c.bias = 'lora_only'), /bias: is "lora_only"/],
    ['dora', (_t, c) => (c.use_dora = true), /DoRA/],
    ['not lora', (_t, c) => (c.peft_type = 'IA3'), /only LORA/],
    ['rank pattern', (_t, c) => (c.rank_pattern = { q_proj: 2 }), /rank_pattern/],
  ];
  try {
    const before = tf.tidy(() => dec.forward({ inputIds: [[1, 2, 3]] }).lastHiddenState.dataSync());
    for (const [i, [label, edit, re]] of cases.entries()) {
      const d = path.join(dir, String(i));
      await writeVariant(d, edit);
      await assert.rejects(loadLoraAdapter(d, dec), (e: unknown) => {
        assert.ok(e instanceof LoraError, `${label}: ${String(e)}`);
        assert.match(e.message, re, label);
        assert.ok(e.message.includes(d), `${label}: the message names the file: ${e.message}`);
        return true;
      });
      assert.equal(getLoraAdapter(dec), undefined, `${label}: nothing attached`);
    }
    await assert.rejects(loadLoraAdapter(path.join(dir, 'none'), dec), /cannot read the adapter config/);
    assert.ok([...dec.weights.values()].every((v) => v.trainable));
    assert.equal(tf.tidy(() => maxAbsDiff(dec.forward({ inputIds: [[1, 2, 3]] }).lastHiddenState, before)), 0);
  } finally {
    dec.dispose();
    await cleanup();
  }
});
