import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers.js';
import { HfConfigError, describeConfig, parseHfConfig, readHfConfig } from '../../src/io/hf-config.js';

// Shaped like a Qwen2-VL config (trimmed), with fields unime does not know kept as they are.
const qwen2vl = {
  architectures: ['Qwen2VLForConditionalGeneration'],
  model_type: 'qwen2_vl',
  hidden_size: 1536,
  intermediate_size: 8960,
  num_hidden_layers: 28,
  num_attention_heads: 12,
  num_key_value_heads: 2,
  vocab_size: 151936,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  rope_scaling: { type: 'mrope', mrope_section: [16, 24, 24] },
  sliding_window: 32768,
  torch_dtype: 'bfloat16',
  tie_word_embeddings: true,
  image_token_id: 151655,
  vision_config: { depth: 32, embed_dim: 1280, hidden_size: 1536, num_heads: 16, in_chans: 3, spatial_patch_size: 14 },
};

// Shaped like a LLaVA-OneVision config: the language model in text_config.
const llavaOv = {
  architectures: ['LlavaOnevisionForConditionalGeneration'],
  model_type: 'llava_onevision',
  image_token_index: 151646,
  text_config: { model_type: 'qwen2', hidden_size: 3584, num_hidden_layers: 28, rope_scaling: null, torch_dtype: 'bfloat16', architectures: null },
  vision_config: { model_type: 'siglip_vision_model', hidden_size: 1152, layer_norm_eps: 1e-6, num_hidden_layers: 26 },
  use_image_newline_parameter: true,
};

async function withConfig(text: string, fn: (dir: string, file: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir();
  try {
    const file = path.join(dir, 'config.json');
    await fsp.writeFile(file, text);
    await fn(dir, file);
  } finally {
    await cleanup();
  }
}

test('reads valid configs from a directory or a file, keeping unknown fields', async () => {
  await withConfig(JSON.stringify(qwen2vl, null, 2), async (dir, file) => {
    const a = await readHfConfig(dir);
    const b = await readHfConfig(file);
    assert.deepEqual(a, qwen2vl);
    assert.deepEqual(b, qwen2vl);
    assert.equal(a.sliding_window, 32768);
    assert.deepEqual(a.rope_scaling?.mrope_section, [16, 24, 24]);
    assert.deepEqual(describeConfig(a), { modelType: 'qwen2_vl', architectures: ['Qwen2VLForConditionalGeneration'] });
  });
  const ov = parseHfConfig(llavaOv, 'config.json');
  assert.equal(ov.text_config?.hidden_size, 3584);
  assert.deepEqual(describeConfig(ov), {
    modelType: 'llava_onevision',
    architectures: ['LlavaOnevisionForConditionalGeneration'],
    textModelType: 'qwen2',
    visionModelType: 'siglip_vision_model',
  });
  assert.deepEqual(describeConfig(parseHfConfig({}, 'x')), { modelType: undefined, architectures: [] });
});

const INVALID: [string, unknown, RegExp][] = [
  ['hidden_size as a string', { hidden_size: '4096' }, /config\.json: hidden_size: must be a positive integer, got "4096"/],
  ['negative layers', { num_hidden_layers: -2 }, /num_hidden_layers: must be a positive integer, got -2/],
  ['fractional heads', { num_attention_heads: 12.5 }, /num_attention_heads: must be a positive integer, got 12\.5/],
  ['null hidden size', { hidden_size: null }, /hidden_size: must be a positive integer, got null/],
  ['architectures as a string', { architectures: 'LlamaForCausalLM' }, /architectures: must be a list of strings, got "LlamaForCausalLM"/],
  ['architectures element', { architectures: ['A', 3] }, /architectures\[1\]: must be a string, got 3/],
  ['eps zero', { rms_norm_eps: 0 }, /rms_norm_eps: must be a positive number, got 0/],
  ['rope_scaling as a number', { rope_scaling: 2 }, /rope_scaling: must be an object or null, got 2/],
  ['rope_scaling factor', { rope_scaling: { type: 'linear', factor: 'two' } }, /rope_scaling\.factor: must be a number, got "two"/],
  ['tie as a string', { tie_word_embeddings: 'true' }, /tie_word_embeddings: must be true or false, got "true"/],
  ['torch_dtype', { torch_dtype: 16 }, /torch_dtype: must be a string such as "bfloat16", got 16/],
  ['nested text config', { text_config: { vocab_size: 0 } }, /text_config\.vocab_size: must be a positive integer, got 0/],
  ['nested vision config type', { vision_config: [] }, /vision_config: must be an object \(a nested model config\), got \[\]/],
  ['deeply nested', { text_config: { text_config: { rope_theta: -1 } } }, /text_config\.text_config\.rope_theta: must be a positive number, got -1/],
  ['image token index', { image_token_index: 1.5 }, /image_token_index: must be an integer, got 1\.5/],
  ['several problems', { hidden_size: 'x', vocab_size: 'y' }, /hidden_size: must be a positive integer, got "x"; also vocab_size must be a positive integer, got "y"/],
  ['not an object', [1, 2], /config must be a JSON object, got an array/],
];

for (const [what, cfg, re] of INVALID) {
  test(`refuses config with ${what}`, () => {
    assert.throws(() => parseHfConfig(cfg, 'config.json'), (e: unknown) => {
      assert.ok(e instanceof HfConfigError, String(e));
      assert.match(e.message, re);
      assert.ok(e.fix);
      return true;
    });
  });
}

test('invalid JSON reports line and column; a missing file says what to do', async () => {
  await withConfig('{\n  "model_type": "llama",\n  "hidden_size": 4096\n  "vocab_size": 32000\n}\n', async (dir, file) => {
    await assert.rejects(readHfConfig(dir), (e: unknown) => {
      assert.ok(e instanceof HfConfigError);
      assert.equal(e.line, 4);
      assert.equal(e.column, 3);
      assert.match(e.message, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4:3: not valid JSON: expected ',' or '}' after an object member, found '"'`));
      return true;
    });
  });
  await withConfig('{"a": 1}', async (dir) => {
    await assert.rejects(readHfConfig(path.join(dir, 'sub')), (e: unknown) => e instanceof HfConfigError && /no config\.json here/.test(e.message));
  });
  await withConfig('\uFEFF{"model_type": "bert"}', async (dir) => {
    assert.equal((await readHfConfig(dir)).model_type, 'bert');
  });
});
