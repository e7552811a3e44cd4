import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fixture, tempDir } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import { Rng } from '../../src/runtime/rng.js';
import { CheckpointError, openCheckpoint, planShards, writeShardedSafetensors, INDEX_FILE } from '../../src/io/checkpoint.js';
import { SafetensorsError, type TensorInput, writeSafetensors } from '../../src/io/safetensors.js';
import { sidecar, inputOf, assertMatchesStored, assertMatchesFloat32 } from './sidecar.js';

const shardedDir = fixture('safetensors', sidecar.sharded.dir);

async function copyDir(from: string, to: string): Promise<void> {
  await fsp.mkdir(to, { recursive: true });
  for (const f of await fsp.readdir(from)) await fsp.copyFile(path.join(from, f), path.join(to, f));
}

const isErr = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof UnimeError, `not a UnimeError: ${e}`);
  assert.match(e.message, re);
  return true;
};

test('opens the sharded fixture through its directory and its index, and reads every tensor', async () => {
  for (const target of [shardedDir, path.join(shardedDir, INDEX_FILE)]) {
    const ck = await openCheckpoint(target);
    try {
      assert.equal(ck.kind, 'sharded');
      assert.equal(ck.files.length, 2);
      assert.deepEqual(ck.files.map((f) => path.basename(f)), ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
      assert.deepEqual([...ck.names].sort(), [...sidecar.sharded.order].sort());
      assert.deepEqual(ck.metadata, sidecar.sharded.metadata);
      assert.equal(ck.indexMetadata?.total_size, 118);
      for (const [name, t] of Object.entries(sidecar.sharded.tensors)) {
        assert.equal(ck.info(name).dtype, t.dtype);
        assertMatchesStored(name, await ck.read(name), t);
        assertMatchesFloat32(name, await ck.readFloat32(name), t);
      }
      assert.equal(path.basename(ck.fileOf('lm_head.weight')), 'model-00002-of-00002.safetensors');
      assert.throws(() => ck.info('nope'), isErr(/no tensor named "nope"/));
    } finally {
      await ck.close();
    }
  }
});

test('writeShardedSafetensors reproduces the sharded fixture byte for byte (shards and index)', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const tensors = sidecar.sharded.order.map((n) => [n, inputOf(sidecar.sharded.tensors[n]!)] as [string, TensorInput]);
    const res = await writeShardedSafetensors(dir, tensors, { maxShardBytes: sidecar.sharded.max_shard_bytes, metadata: sidecar.sharded.metadata });
    assert.equal(res.totalSize, 118);
    assert.deepEqual((await fsp.readdir(dir)).sort(), (await fsp.readdir(shardedDir)).sort());
    for (const f of await fsp.readdir(shardedDir)) {
      assert.deepEqual(await fsp.readFile(path.join(dir, f)), readFileSync(path.join(shardedDir, f)), f);
    }
  } finally {
    await cleanup();
  }
});

test('single-file checkpoints: a .safetensors path, a directory with model.safetensors, or with one other weight file', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const ck1 = await openCheckpoint(fixture('safetensors', 'plain.safetensors'));
    assert.equal(ck1.kind, 'single');
    assert.deepEqual([...(await ck1.readFloat32('weight'))], [1, 2, 3, 4]);
    assert.equal(ck1.metadata, undefined);
    await ck1.close();

    const w = { w: { dtype: 'F32' as const, shape: [1], data: new Float32Array([5]) } };
    await writeShardedSafetensors(path.join(dir, 'a'), w);
    assert.deepEqual(await fsp.readdir(path.join(dir, 'a')), ['model.safetensors']);
    const ck2 = await openCheckpoint(path.join(dir, 'a'));
    assert.deepEqual(ck2.files, [path.join(dir, 'a', 'model.safetensors')]);
    assert.deepEqual([...(await ck2.readFloat32('w'))], [5]);
    await ck2.close();

    await writeSafetensors(path.join(dir, 'b', 'adapter_model.safetensors'), w);
    const ck3 = await openCheckpoint(path.join(dir, 'b'));
    assert.deepEqual(ck3.names, ['w']);
    await ck3.close();

    await writeSafetensors(path.join(dir, 'b', 'other.safetensors'), w);
    await assert.rejects(openCheckpoint(path.join(dir, 'b')), isErr(/holds several weight files[\s\S]*fix: pass the \.safetensors file or index you mean/));
    await fsp.mkdir(path.join(dir, 'c'));
    await fsp.writeFile(path.join(dir, 'c', 'pytorch_model.bin'), 'x');
    await assert.rejects(openCheckpoint(path.join(dir, 'c')), isErr(/has no model\.safetensors or model\.safetensors\.index\.json \(it has pytorch_model\.bin/));
    await assert.rejects(openCheckpoint(path.join(dir, 'missing')), isErr(/missing: no such file or directory/));
  } finally {
    await cleanup();
  }
});

test('sharded round trip with random tensors, an oversized tensor alone in its shard, and re-saving in another layout', async () => {
  const rng = new Rng(11);
  const { dir, cleanup } = await tempDir();
  try {
    const tensors: Record<string, TensorInput> = {};
    for (let i = 0; i < 12; i++) {
      const n = 1 + rng.int(40);
      tensors[`layers.${i}.weight`] = { dtype: i % 3 === 0 ? 'BF16' : 'F32', shape: [n], data: i % 3 === 0 ? new Uint16Array(n).map(() => rng.int(65536)) : rng.fillNormal(new Float32Array(n)) };
    }
    tensors['big'] = { dtype: 'F32', shape: [100], data: rng.fillNormal(new Float32Array(100)) };
    const res = await writeShardedSafetensors(dir, tensors, { maxShardBytes: 128, metadata: { format: 'pt' } });
    assert.ok(res.files.length > 3);
    assert.ok(res.indexPath);
    const index = JSON.parse(await fsp.readFile(res.indexPath, 'utf8'));
    assert.equal(index.metadata.total_size, Object.values(tensors).reduce((s, t) => s + t.data.byteLength, 0));
    assert.deepEqual(Object.keys(index.weight_map), Object.keys(tensors).sort());
    const bigShard = index.weight_map.big;
    assert.deepEqual(Object.entries(index.weight_map).filter(([, f]) => f === bigShard).map(([n]) => n), ['big']);

    const ck = await openCheckpoint(dir);
    for (const [name, t] of Object.entries(tensors)) {
      const got = await ck.read(name);
      assert.deepEqual(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength), name);
    }
    await ck.close();

    // Re-saving as a single file removes the old shards and index; and back.
    await writeShardedSafetensors(dir, tensors);
    assert.deepEqual(await fsp.readdir(dir), ['model.safetensors']);
    await writeShardedSafetensors(dir, tensors, { maxShardBytes: 1000 });
    const files = (await fsp.readdir(dir)).sort();
    assert.deepEqual(files, ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', INDEX_FILE]);
  } finally {
    await cleanup();
  }
});

test('planShards: greedy in order, never an empty shard, oversized tensors alone', () => {
  const t = (name: string, n: number) => ({ name, dtype: 'U8' as const, shape: [n], bytes: new Uint8Array(n) });
  const names = (s: ReturnType<typeof planShards>) => s.map((x) => x.map((y) => y.name));
  assert.deepEqual(names(planShards([t('a', 5), t('b', 5), t('c', 1), t('d', 20), t('e', 3)], 10)), [['a', 'b'], ['c'], ['d'], ['e']]);
  assert.deepEqual(names(planShards([], 10)), [[]]);
  assert.deepEqual(names(planShards([t('a', 0), t('b', 10)], 10)), [['a', 'b']]);
});

test('sharded errors name the index file and the tensor', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const fresh = async (name: string) => {
      const d = path.join(dir, name);
      await copyDir(shardedDir, d);
      return d;
    };
    const index = (d: string) => path.join(d, INDEX_FILE);
    const editIndex = async (d: string, f: (idx: { weight_map: Record<string, string> }) => unknown) => {
      const idx = JSON.parse(await fsp.readFile(index(d), 'utf8'));
      await fsp.writeFile(index(d), JSON.stringify(f(idx) ?? idx, null, 2));
    };

    const missing = await fresh('missing-shard');
    await fsp.rm(path.join(missing, 'model-00002-of-00002.safetensors'));
    await assert.rejects(openCheckpoint(missing), (e: unknown) => {
      assert.ok(e instanceof CheckpointError);
      assert.match(e.message, /model\.safetensors\.index\.json: weight_map\.lm_head\.weight: shard model-00002-of-00002\.safetensors \(holding "lm_head\.weight" and 2 more\) does not exist/);
      assert.match(e.message, /fix: download/);
      return true;
    });

    const notInShard = await fresh('not-in-shard');
    await editIndex(notInShard, (idx) => {
      idx.weight_map['model.extra.weight'] = 'model-00001-of-00002.safetensors';
    });
    await assert.rejects(openCheckpoint(notInShard), isErr(/index\.json: weight_map\.model\.extra\.weight: tensor is mapped to model-00001-of-00002\.safetensors but that shard has no such tensor/));

    const wrongShard = await fresh('wrong-shard');
    await editIndex(wrongShard, (idx) => {
      idx.weight_map['lm_head.weight'] = 'model-00001-of-00002.safetensors';
    });
    await assert.rejects(openCheckpoint(wrongShard), isErr(/weight_map\.lm_head\.weight: tensor is mapped to model-00001-of-00002\.safetensors but that shard has no such tensor/));

    const badJson = await fresh('bad-json');
    await fsp.writeFile(index(badJson), '{\n  "metadata": {"total_size": 118},\n  "weight_map": {"a": "b",}\n}\n');
    await assert.rejects(openCheckpoint(badJson), isErr(/model\.safetensors\.index\.json:3:27: index is not valid JSON: expected a double-quoted property name, found '}'/));

    const noMap = await fresh('no-map');
    await editIndex(noMap, () => ({ metadata: {} }));
    await assert.rejects(openCheckpoint(noMap), isErr(/index\.json: weight_map: "weight_map" must be an object/));

    const badValue = await fresh('bad-value');
    await editIndex(badValue, (idx) => {
      (idx.weight_map as Record<string, unknown>)['lm_head.weight'] = 3;
    });
    await assert.rejects(openCheckpoint(badValue), isErr(/weight_map\.lm_head\.weight: shard file must be a non-empty string, got 3/));

    const escape = await fresh('escape');
    await editIndex(escape, (idx) => {
      idx.weight_map['lm_head.weight'] = '../../etc/passwd';
    });
    await assert.rejects(openCheckpoint(escape), isErr(/points outside the checkpoint directory/));

    const corrupt = await fresh('corrupt-shard');
    await fsp.truncate(path.join(corrupt, 'model-00001-of-00002.safetensors'), 100);
    await assert.rejects(openCheckpoint(corrupt), (e: unknown) => e instanceof SafetensorsError && /model-00001-of-00002\.safetensors: .*truncated/.test(e.message));

    await assert.rejects(writeShardedSafetensors(path.join(dir, 'w'), {}, { maxShardBytes: 0 }), isErr(/maxShardBytes must be a positive number/));
  } finally {
    await cleanup();
  }
});
