/** A checkpoint directory as a training stage leaves it, for the push and model card tests. */
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import YAML from 'yaml';
import { blob } from './hub-helpers.js';

export const ADAPTER = blob(3000, 11);

export const RECIPE = `name: unime-phi35v-stage2
description: UniME stage 2 on Phi-3.5-V.
vars:
  model: microsoft/Phi-3.5-vision-instruct
stages:
  - name: hardneg
    kind: unime-hardneg
    model: \${vars.model}
    data:
      root: data/mmeb-train
    lora:
      rank: 16
      alpha: 64
    loss:
      mode: hardneg
      temperature: 0.02
      hard_negatives: 8
    train:
      lr: 1.0e-4
      max_steps: 1000
      batch_size: 1024
  - name: eval
    kind: eval
    suite: mmeb
    model: \${vars.model}
    data:
      root: data/mmeb-eval
`;

export const EVAL = { metrics: { image: { 'ImageNet-1K': { 'hit@1': 0.6, 'hit@5': 0.9 }, MSCOCO_i2t: { 'hit@1': 0.7 } } } };

/** An adapter checkpoint dir with everything a training stage leaves behind, wanted or not. */
export async function makeCheckpoint(dir: string): Promise<void> {
  const w = async (rel: string, content: string | Buffer) => {
    const p = path.join(dir, ...rel.split('/'));
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, content);
  };
  await w('adapter_config.json', JSON.stringify({ base_model_name_or_path: 'microsoft/Phi-3.5-vision-instruct', peft_type: 'LORA', r: 16 }));
  await w('adapter_model.safetensors', ADAPTER);
  await w('tokenizer.json', JSON.stringify({ model: { type: 'BPE' } }));
  await w('tokenizer_config.json', '{}');
  await w('preprocessor_config.json', JSON.stringify({ image_size: 336 }));
  await w('recipe.yaml', RECIPE);
  await w('metrics.jsonl', '{"step":1,"loss":2.5}\n{"step":2,"loss":2.1}\n');
  await w('train.log', 'step 1 loss 2.5\nstep 2 loss 2.1\n');
  await w('eval_results.json', JSON.stringify(EVAL));
  await w('optimizer.safetensors', blob(2000, 12));
  await w('.stage.json.tmp-123', 'x');
  await w('adapter_model.safetensors.tmp-1-abcd', 'x');
  await w('checkpoint-10/adapter_model.safetensors', blob(100, 13));
  await w('README.md', 'an old card');
  await w('notes.bin', blob(100, 14));
}

export const EXPECTED_UPLOAD = [
  'README.md',
  'adapter_config.json',
  'adapter_model.safetensors',
  'eval_results.json',
  'metrics.jsonl',
  'preprocessor_config.json',
  'recipe.yaml',
  'tokenizer.json',
  'tokenizer_config.json',
  'train.log',
];

export function frontMatter(card: string): Record<string, unknown> {
  assert.ok(card.startsWith('---\n'));
  const end = card.indexOf('\n---\n', 4);
  assert.ok(end > 0);
  return YAML.parse(card.slice(4, end)) as Record<string, unknown>;
}

