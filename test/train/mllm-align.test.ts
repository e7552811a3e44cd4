/**
 * The mllm-align engine on the synthetic benchmark's tiny LLaVA: the tower comes from another
 * checkpoint, the projector and decoder train on image-caption pairs, and model/ is a complete
 * checkpoint in the base's layout whose untrained tensors are byte for byte the base's. That it
 * learns (with a LIFT-trained tower) is tested in clip-train.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { generateSynthetic } from '../../tools/synth/generate.js';
import { openCheckpoint } from '../../src/io/checkpoint.js';
import { MultimodalEmbedder } from '../../src/models/mllm/embedder.js';
import { parseRecipe, runRecipe } from '../../src/recipes/index.js';
import { useDevice } from '../../src/runtime/devices.js';
import { fixture, tempDir } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import { ALIGN_RECORD, type MllmAlignResult } from '../../src/train/mllm-align.js';

let dir: string;
let cleanup: () => Promise<void>;
const quiet = () => ({ info: (_: string) => {}, warn: (_: string) => {} });

before(async () => {
  ({ dir, cleanup } = await tempDir());
  await useDevice('auto');
  await generateSynthetic({ out: path.join(dir, 'syn'), seed: 0, size: 'tiny' });
  // a second tiny LLaVA (other seed, so other weights) lends its vision tower
  await generateSynthetic({ out: path.join(dir, 'syn1'), seed: 1, size: 'tiny' });
});
after(() => cleanup());

function recipe(out: string, stage: string): string {
  return `name: align-test
seed: 0
output_dir: ${JSON.stringify(out)}
vars:
  syn: ${JSON.stringify(path.join(dir, 'syn'))}
stages:
  - name: align
    kind: mllm-align
    model: \${vars.syn}/models/tiny-mllm
    data: {path: "\${vars.syn}/image-text/train.parquet"}
${stage}`;
}

async function tensors(dirOrFile: string): Promise<Map<string, Uint8Array>> {
  const ck = await openCheckpoint(dirOrFile);
  try {
    const out = new Map<string, Uint8Array>();
    for (const n of ck.names) out.set(n, await ck.readBytes(n));
    return out;
  } finally {
    await ck.close();
  }
}

test('mllm-align: tower from vision_from, projector and decoder trained, untouched tensors kept byte for byte', async () => {
  const out = path.join(dir, 'run');
  const donor = path.join(dir, 'syn1', 'models', 'tiny-mllm');
  const text = recipe(
    out,
    `    vision_from: ${JSON.stringify(donor)}
    eval_data: \${vars.syn}/image-text/test.parquet
    train: {lr: 1.0e-3, max_steps: 30, batch_size: 16, warmup_ratio: 0, log_every: 1, save_every: 20}
`,
  );
  const run = await runRecipe(parseRecipe(text, { file: 'align.yaml', env: {} }), { log: quiet(), hub: { offline: true } });
  const r = (run.stages[0] as { result?: MllmAlignResult }).result!;
  assert.equal(r.steps, 30);
  // Learning itself is checked with a trained tower in test/train/clip-train.test.ts (a random tower
  // like this one collapses to one embedding); here: what is written where.
  const losses = (r as unknown as { losses: number[] }).losses;
  assert.ok(losses.length === 30 && losses.every(Number.isFinite));
  assert.ok(r.retrieval_before !== null && r.retrieval_after !== null && r.retrieval_after.images === 32);

  const base = await tensors(path.join(dir, 'syn', 'models', 'tiny-mllm'));
  const lent = await tensors(donor);
  const aligned = await tensors(path.join(out, 'align', 'model'));
  assert.deepEqual([...aligned.keys()].sort(), [...base.keys()].sort());
  const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));
  let tower = 0;
  let trained = 0;
  for (const [name, bytes] of aligned) {
    if (name.startsWith('model.vision_tower.')) {
      tower++;
      assert.ok(same(bytes, lent.get(name)!), `${name} is the lent tower's`);
    } else if (name.startsWith('model.multi_modal_projector.') || name.startsWith('model.language_model.')) {
      if (!same(bytes, base.get(name)!)) trained++;
    } else {
      assert.ok(same(bytes, base.get(name)!), `${name} is untouched`);
    }
  }
  assert.ok(tower > 0);
  assert.ok(trained > 20, `projector and decoder tensors changed (${trained})`);
  for (const f of ['config.json', 'tokenizer.json', 'preprocessor_config.json', ALIGN_RECORD]) assert.ok(existsSync(path.join(out, 'align', 'model', f)), f);
  const record = JSON.parse(await fsp.readFile(path.join(out, 'align', 'model', ALIGN_RECORD), 'utf8')) as { vision_from: string; steps: number };
  assert.equal(record.vision_from, donor);
  assert.equal(record.steps, 30);

  // The aligned checkpoint is an ordinary model: it loads and embeds.
  const emb = await MultimodalEmbedder.load(path.join(out, 'align', 'model'));
  try {
    const e = await emb.embed([{ text: 'a red circle' }]);
    assert.equal(e.length, emb.dim);
    assert.ok(Math.abs(Math.hypot(...e) - 1) < 1e-4);
  } finally {
    emb.dispose();
  }
});

test('mllm-align with negative_column: each row\'s hard-negative caption is one more column of its softmax', async () => {
  // one step from the same weights and batch: extra columns can only raise the InfoNCE
  const first = async (name: string, neg: boolean) => {
    const text = recipe(path.join(dir, name), `    train: {lr: 1.0e-3, max_steps: 1, batch_size: 16, warmup_ratio: 0, save_every: null}\n`).replace(
      'data: {path: "${vars.syn}/image-text/train.parquet"}',
      `data: {path: "\${vars.syn}/image-text/train.parquet"${neg ? ', negative_column: neg_caption' : ''}}`,
    );
    const run = await runRecipe(parseRecipe(text, { file: `${name}.yaml`, env: {} }), { log: quiet(), hub: { offline: true } });
    return (run.stages[0] as { result?: MllmAlignResult }).result!;
  };
  const plain = await first('plain', false);
  const neg = await first('neg', true);
  assert.ok(neg.first_loss! > plain.first_loss! + 1e-4, `first loss ${neg.first_loss} with negatives, ${plain.first_loss} without`);
});

test('mllm-align refuses a vision_from tower of another shape, naming the field and the fix', async () => {
  // the LLaVA-NeXT fixture's tower: 16 wide at 16 px / 4 px patches, the tiny LLaVA's is 64 wide at 32 px / 8 px
  const other = fixture('llava_next', 'llava-next-tiny');
  const text = recipe(path.join(dir, 'run-bad'), `    vision_from: ${JSON.stringify(other)}\n    train: {max_steps: 1, batch_size: 8}\n`);
  const err = await runRecipe(parseRecipe(text, { file: 'align.yaml', env: {} }), { log: quiet(), hub: { offline: true } }).catch((e: Error) => e);
  assert.ok(err instanceof UnimeError, String(err));
  assert.equal(err.field, 'vision_from');
  assert.match(err.message, /2 layers x 16 wide, 2 heads, 16px \/ 4px patches\) does not have the model's shape \(2 layers x 64 wide, 4 heads, 32px \/ 8px patches\)/);
  assert.match(String(err.fix), /clip-train vision.arch/);
  assert.ok(!existsSync(path.join(dir, 'run-bad', 'align', 'model')), 'nothing written');
});

test('mllm-align refuses a text-only checkpoint, naming the field', async () => {
  const text = recipe(path.join(dir, 'run-text'), `    train: {max_steps: 1, batch_size: 8}\n`).replace('${vars.syn}/models/tiny-mllm', '${vars.syn}/models/tiny-teacher');
  const err = await runRecipe(parseRecipe(text, { file: 'align.yaml', env: {} }), { log: quiet(), hub: { offline: true } }).catch((e: Error) => e);
  assert.ok(err instanceof UnimeError, String(err));
  assert.equal(err.field, 'model');
  assert.match(err.message, /is a llama checkpoint; mllm-align trains LLaVA-family ones/);
});
