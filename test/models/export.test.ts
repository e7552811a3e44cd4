/**
 * `unime export`: the LLaVA fixture with a LoRA adapter (random non-zero B, so the merge matters)
 * exported as a merged HF checkpoint embeds exactly like base + adapter, keeps every tensor name,
 * leaves untouched tensors byte-identical and records what went in; the CLI refuses a missing model
 * and an existing output directory with exit code 2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tf } from '../../src/runtime/tf.js';
import { INDEX_FILE, openCheckpoint, writeShardedSafetensors } from '../../src/io/checkpoint.js';
import { loadMultimodalModel } from '../../src/models/mllm/index.js';
import { MultimodalEmbedder } from '../../src/models/mllm/embedder.js';
import { applyLora, saveLoraAdapter } from '../../src/models/peft/index.js';
import { EXPORT_RECORD, exportMergedCheckpoint } from '../../src/models/export.js';
import { fixture, tempDir } from '../helpers.js';
import { runCli } from '../cli/run-cli.js';

const base = fixture('llava', 'llava-tiny');
const inputs = [
  { text: 'a photo of a red cube on a table' },
  { text: 'USER: <image>\nWhat is shown here? ASSISTANT:', image: fixture('llava', 'images', 'red-square.png') },
];

async function makeAdapter(dir: string): Promise<void> {
  const model = await loadMultimodalModel(base, { trainable: false });
  try {
    const adapter = applyLora(model.decoder, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
    let k = 1;
    for (const l of adapter.layers) {
      const n = l.loraB.size;
      const vals = new Float32Array(n);
      for (let i = 0; i < n; i++) vals[i] = 0.05 * Math.sin(k * 12.9898 + i * 78.233);
      k++;
      const t = tf.tensor(vals, l.loraB.shape, 'float32');
      l.loraB.assign(t);
      t.dispose();
    }
    await saveLoraAdapter(dir, model.decoder);
  } finally {
    model.dispose();
  }
}

async function embed(dir: string, adapters: string[] = []): Promise<Float32Array> {
  const e = await MultimodalEmbedder.load(dir, { adapters });
  try {
    return await e.embed(inputs);
  } finally {
    e.dispose();
  }
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('export merges the adapter into an HF checkpoint that embeds like base + adapter', async () => {
  const tmp = await tempDir('unime-export-');
  try {
    const adapterDir = path.join(tmp.dir, 'adapter');
    await makeAdapter(adapterDir);
    const out = path.join(tmp.dir, 'merged');
    const res = await runCli(['export', base, out, '--adapter', adapterDir], { timeoutMs: 240000 });
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /exported \d+ tensors/);

    const [want, withoutAdapter, got] = [await embed(base, [adapterDir]), await embed(base), await embed(out)];
    let dMerge = 0;
    let dBase = 0;
    for (let i = 0; i < want.length; i++) {
      dMerge = Math.max(dMerge, Math.abs(want[i]! - got[i]!));
      dBase = Math.max(dBase, Math.abs(want[i]! - withoutAdapter[i]!));
    }
    assert.ok(dBase > 1e-3, `the adapter must change the embeddings (max diff ${dBase})`);
    assert.ok(dMerge <= 1e-5, `merged export differs from base + adapter by ${dMerge}`);

    const src = await openCheckpoint(base);
    const dst = await openCheckpoint(out);
    try {
      assert.deepEqual([...dst.names].sort(), [...src.names].sort());
      const record = JSON.parse(await fsp.readFile(path.join(out, EXPORT_RECORD), 'utf8')) as {
        unime_version: string;
        base: { path: string };
        adapters: { path: string; files: Record<string, string> }[];
        merged_tensors: string[];
      };
      const merged = new Set(record.merged_tensors);
      assert.ok(merged.size > 0);
      for (const k of merged) assert.match(k, /\.(q_proj|v_proj|down_proj)\.weight$/);
      let identical = 0;
      for (const n of src.names) {
        const a = await src.readBytes(n);
        const b = await dst.readBytes(n);
        assert.deepEqual(dst.info(n).shape, src.info(n).shape, n);
        assert.equal(dst.info(n).dtype, src.info(n).dtype, n);
        if (merged.has(n)) assert.notEqual(sha(a), sha(b), `${n} was merged`);
        else {
          assert.equal(sha(a), sha(b), `${n} must be copied as it is`);
          identical++;
        }
      }
      assert.equal(identical, src.names.length - merged.size);
      assert.equal(record.base.path, base);
      assert.equal(record.adapters.length, 1);
      assert.equal(record.adapters[0]!.path, adapterDir);
      assert.equal(record.adapters[0]!.files['adapter_model.safetensors'], sha(await fsp.readFile(path.join(adapterDir, 'adapter_model.safetensors'))));
      assert.match(record.unime_version, /^\d+\.\d+\.\d+/);
    } finally {
      await src.close();
      await dst.close();
    }
    for (const f of await fsp.readdir(base)) {
      if (f.endsWith('.safetensors')) continue;
      assert.deepEqual(await fsp.readFile(path.join(out, f)), await fsp.readFile(path.join(base, f)), `${f} copied`);
    }
    assert.deepEqual((await fsp.readdir(tmp.dir)).filter((f) => f.startsWith('.')), [], 'no temporary directory left behind');

    // An existing non-empty output is refused without --force, and replaced with it.
    const again = await runCli(['export', base, out, '--adapter', adapterDir]);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /already exists and is not empty/);
    assert.match(again.stderr, /--force/);
    const forced = await runCli(['export', base, out, '--force', '--dtype', 'bfloat16'], { timeoutMs: 240000 });
    assert.equal(forced.code, 0, forced.stderr);
    const bf = await openCheckpoint(out);
    try {
      assert.ok(bf.names.every((n) => bf.info(n).dtype === 'BF16' || bf.info(n).dtype !== 'F32'));
    } finally {
      await bf.close();
    }
    const cfg = JSON.parse(await fsp.readFile(path.join(out, 'config.json'), 'utf8')) as { torch_dtype?: string };
    assert.equal(cfg.torch_dtype, 'bfloat16');
    assert.ok(!existsSync(path.join(out, 'adapter_config.json')));
  } finally {
    await tmp.cleanup();
  }
});

test('export exits 2 with a clear message for a missing model directory', async () => {
  const tmp = await tempDir('unime-export-');
  try {
    const res = await runCli(['export', path.join(tmp.dir, 'no-such-model'), path.join(tmp.dir, 'out')]);
    assert.equal(res.code, 2, res.stderr);
    assert.match(res.stderr, /no-such-model/);
    assert.match(res.stderr, /neither an existing directory nor a Hub id/);
    assert.ok(!existsSync(path.join(tmp.dir, 'out')));
  } finally {
    await tmp.cleanup();
  }
});

test('a sharded source is exported in the same shards, with its index', async () => {
  const tmp = await tempDir('unime-export-');
  try {
    const sharded = path.join(tmp.dir, 'sharded');
    await fsp.mkdir(sharded);
    for (const f of await fsp.readdir(base)) if (!f.endsWith('.safetensors')) await fsp.copyFile(path.join(base, f), path.join(sharded, f));
    const src = await openCheckpoint(base);
    try {
      const tensors: [string, { dtype: 'F32'; shape: readonly number[]; data: Uint8Array }][] = [];
      for (const n of src.names) tensors.push([n, { dtype: src.info(n).dtype as 'F32', shape: src.info(n).shape, data: await src.readBytes(n) }]);
      await writeShardedSafetensors(sharded, tensors, { maxShardBytes: 64 * 1024, metadata: { format: 'pt' } });
    } finally {
      await src.close();
    }
    const adapterDir = path.join(tmp.dir, 'adapter');
    await makeAdapter(adapterDir);
    const out = path.join(tmp.dir, 'out');
    const res = await exportMergedCheckpoint(sharded, out, { adapters: [adapterDir] });
    assert.ok(res.weightFiles.length > 2);
    const srcIndex = JSON.parse(await fsp.readFile(path.join(sharded, INDEX_FILE), 'utf8')) as { weight_map: Record<string, string>; metadata: { total_size: number } };
    const outIndex = JSON.parse(await fsp.readFile(path.join(out, INDEX_FILE), 'utf8')) as typeof srcIndex;
    assert.deepEqual(outIndex.weight_map, srcIndex.weight_map);
    assert.equal(outIndex.metadata.total_size, srcIndex.metadata.total_size);
    assert.ok(!existsSync(path.join(out, 'model.safetensors')));
    const got = await embed(out);
    const want = await embed(base, [adapterDir]);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(want[i]! - got[i]!) <= 1e-5);
  } finally {
    await tmp.cleanup();
  }
});
