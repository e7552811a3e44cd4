/**
 * Adapter chains across training stages: what a model reference (null, an adapter directory, a
 * stage output directory with or without adapter-chain.json) resolves to, the chain file written
 * and read back, bad references named by field, and merging a chain in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tf } from '../../../src/runtime/tf.js';
import { UnimeError } from '../../../src/errors.js';
import { loadTextDecoder } from '../../../src/models/text/load.js';
import {
  ADAPTER_CHAIN_FILE,
  ADAPTER_CONFIG,
  ADAPTER_DIR,
  getLoraAdapter,
  loadLoraAdapter,
  mergeAdapterChain,
  removeLora,
  resolveAdapterChain,
  writeAdapterChain,
} from '../../../src/models/peft/index.js';
import { fixture, tempDir } from '../../helpers.js';
import { fixtureDir, maxAbsDiff } from '../fixtures.js';

async function fakeAdapter(dir: string): Promise<string> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, ADAPTER_CONFIG), '{}\n');
  return dir;
}

test('resolveAdapterChain: null, an adapter directory, stage directories with and without a chain file', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    assert.deepEqual(await resolveAdapterChain(null), []);
    const plain = await fakeAdapter(path.join(dir, 'plain'));
    assert.deepEqual(await resolveAdapterChain(plain), [plain]);
    // a relative reference resolves against the working directory
    assert.deepEqual(await resolveAdapterChain(path.relative(process.cwd(), plain)), [plain]);

    const stage1 = path.join(dir, 'stage1');
    await fakeAdapter(path.join(stage1, ADAPTER_DIR));
    assert.deepEqual(await resolveAdapterChain(stage1), [path.join(stage1, ADAPTER_DIR)]);

    const stage2 = path.join(dir, 'stage2');
    await fakeAdapter(path.join(stage2, ADAPTER_DIR));
    // relative entries in the chain file are taken relative to the stage directory
    await fsp.writeFile(path.join(stage2, ADAPTER_CHAIN_FILE), JSON.stringify([path.join('..', 'stage1', ADAPTER_DIR), plain]));
    assert.deepEqual(await resolveAdapterChain(stage2), [path.join(stage1, ADAPTER_DIR), plain, path.join(stage2, ADAPTER_DIR)]);
  } finally {
    await cleanup();
  }
});

test('writeAdapterChain + resolveAdapterChain round-trip with absolute paths, stage after stage', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const stage1 = path.join(dir, 's1');
    await fakeAdapter(path.join(stage1, ADAPTER_DIR));
    const before1 = await resolveAdapterChain(null);
    await writeAdapterChain(stage1, before1);
    const stage2 = path.join(dir, 's2');
    await fakeAdapter(path.join(stage2, ADAPTER_DIR));
    const before2 = await resolveAdapterChain(stage1);
    await writeAdapterChain(stage2, before2);
    const stage3 = path.join(dir, 's3');
    await fakeAdapter(path.join(stage3, ADAPTER_DIR));
    await writeAdapterChain(stage3, await resolveAdapterChain(path.relative(process.cwd(), stage2)));
    const written = JSON.parse(await fsp.readFile(path.join(stage3, ADAPTER_CHAIN_FILE), 'utf8')) as string[];
    assert.ok(written.every((p) => path.isAbsolute(p)), 'chain entries are stored absolute');
    assert.deepEqual(await resolveAdapterChain(stage3), [stage1, stage2, stage3].map((s) => path.join(s, ADAPTER_DIR)));
    assert.deepEqual(JSON.parse(await fsp.readFile(path.join(stage1, ADAPTER_CHAIN_FILE), 'utf8')), []);
  } finally {
    await cleanup();
  }
});

test('resolveAdapterChain names the field for a directory without an adapter, and the file for a bad chain', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const empty = path.join(dir, 'empty');
    await fsp.mkdir(empty);
    await assert.rejects(resolveAdapterChain(empty), (e: Error) => e instanceof UnimeError && e.field === 'init_from' && /holds no LoRA adapter/.test(e.message) && e.message.includes('init_from'));
    await assert.rejects(resolveAdapterChain(path.join(dir, 'missing'), 'stages[1].init_from'), (e: Error) => e instanceof UnimeError && e.field === 'stages[1].init_from');
    const stage = path.join(dir, 'stage');
    await fakeAdapter(path.join(stage, ADAPTER_DIR));
    const chain = path.join(stage, ADAPTER_CHAIN_FILE);
    await fsp.writeFile(chain, '[not json');
    await assert.rejects(resolveAdapterChain(stage), (e: Error) => e instanceof UnimeError && e.file === chain && /not valid JSON/.test(e.message));
    await fsp.writeFile(chain, JSON.stringify({ adapters: ['a'] }));
    await assert.rejects(resolveAdapterChain(stage), (e: Error) => e instanceof UnimeError && e.file === chain && /JSON list/.test(e.message));
    await fsp.writeFile(chain, JSON.stringify(['a', 3]));
    await assert.rejects(resolveAdapterChain(stage), (e: Error) => e instanceof UnimeError && /JSON list/.test(e.message));
  } finally {
    await cleanup();
  }
});

test('mergeAdapterChain folds adapters in order: the same adapter twice adds its update twice', async () => {
  const adapterDir = fixture('peft', 'llama-tiny-lora');
  const dec = await loadTextDecoder(fixtureDir('llama-tiny'), { trainable: false });
  const key = 'layers.0.self_attn.q_proj.weight';
  try {
    const base = dec.weights.get(key)!.dataSync().slice();
    const adapter = await loadLoraAdapter(adapterDir, dec);
    const layer = adapter.layers.find((l) => l.moduleName.endsWith('layers.0.self_attn.q_proj'))!;
    const delta = tf.tidy(() => layer.deltaWeight().dataSync().slice());
    removeLora(dec);
    await mergeAdapterChain(dec, [adapterDir, adapterDir]);
    assert.equal(getLoraAdapter(dec), undefined);
    const want = base.map((w, i) => w + 2 * delta[i]!);
    assert.ok(maxAbsDiff(dec.weights.get(key)!, want) < 1e-6);
    assert.ok(dec.weights.get(key)!.trainable === false, 'merging keeps the base weights frozen');
    await mergeAdapterChain(dec, []);
  } finally {
    dec.dispose();
  }
});
