import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { writeSafetensors, type TensorInput } from '../../../src/io/safetensors.js';
import { adapterTarget, MultimodalLoraTarget } from '../../../src/models/mllm/lora-target.js';
import type { MultimodalModel } from '../../../src/models/mllm/types.js';
import { ADAPTER_WEIGHTS } from '../../../src/models/peft/adapter-io.js';
import { tf } from '../../../src/runtime/tf.js';
import { tempDir } from '../../helpers.js';

/** A model with one decoder and one tower linear layer under the given checkpoint prefixes. */
function fakeModel(decoderPrefix: string, visionPrefix: string): MultimodalModel {
  const v = () => tf.variable(tf.zeros([2, 2]), false);
  return {
    dir: '/models/fake',
    decoder: { weights: new Map([['layers.0.self_attn.qkv_proj.weight', v()]]), source: { prefix: decoderPrefix } },
    vision: { weights: new Map([['encoder.layers.0.self_attn.q_proj.weight', v()]]), source: { prefix: visionPrefix } },
  } as unknown as MultimodalModel;
}

async function adapterWith(dir: string, modules: string[]): Promise<string> {
  const tensors: [string, TensorInput][] = modules.flatMap((m) =>
    (['A', 'B'] as const).map((w) => [`base_model.model.${m}.lora_${w}.weight`, { dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }] as [string, TensorInput]),
  );
  await writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), tensors);
  return dir;
}

test('adapterTarget tells a tower adapter by the tower\'s weights, also where the tower sits under the decoder\'s prefix (Phi-3.5-V)', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    for (const [dp, vp] of [
      ['model.language_model.', 'model.vision_tower.vision_model.'], // LLaVA (transformers >= 4.52)
      ['model.', 'model.vision_embed_tokens.img_processor.vision_model.'], // Phi-3.5-V
    ] as const) {
      const model = fakeModel(dp, vp);
      const lm = await adapterWith(path.join(dir, `lm-${dp}`), [`${dp}layers.0.self_attn.qkv_proj`]);
      assert.equal((await adapterTarget(model, lm)).target, model.decoder, `${dp}: a language-model adapter goes to the decoder`);
      const both = await adapterWith(path.join(dir, `both-${dp}`), [`${dp}layers.0.self_attn.qkv_proj`, `${vp}encoder.layers.0.self_attn.q_proj`]);
      const t = await adapterTarget(model, both);
      assert.ok(t.target instanceof MultimodalLoraTarget, `${dp}: a tower adapter goes to both parts`);
      assert.equal(t.modulePrefix, '');
      // the joint target names both parts by their full checkpoint keys
      assert.deepEqual([...t.target.weights.keys()], [`${dp}layers.0.self_attn.qkv_proj.weight`, `${vp}encoder.layers.0.self_attn.q_proj.weight`]);
    }
  } finally {
    await cleanup();
  }
});
