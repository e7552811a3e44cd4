import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers.js';
import {
  EmbeddingCache,
  IDENTITY_FILE,
  decodeShard,
  encodeShard,
  imageDigest,
  inputKey,
  modelIdentity,
  modelKey,
  type ModelIdentity,
} from '../../src/eval/embed-cache.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => ({ dir, cleanup } = await tempDir('unime-cache-')));
after(() => cleanup());

const ID: ModelIdentity = { checkpoint: '/models/x', files: [{ name: 'config.json', size: 10, mtime_ms: 1 }], adapters: [], settings: { max_length: 32 } };
const vec = (seed: number, dim = 4) => Float32Array.from({ length: dim }, (_, i) => Math.sin(seed * 7 + i));
const shardsOf = async (d: string) => (await fsp.readdir(d)).filter((n) => n.endsWith('.emb')).sort();

test('a shard round-trips bit-exactly and any damage is detected', () => {
  const keys = [inputKey('a', null), inputKey('b', imageDigest(new Uint8Array([1, 2, 3])))];
  const data = Float32Array.from([0.1, -0.2, 3e-8, Number.MAX_VALUE / 1e30, 1, 2, 3, 4]);
  const buf = encodeShard('m1', 4, keys, data);
  const back = decodeShard(buf);
  assert.deepEqual(back.keys, keys);
  assert.equal(back.dim, 4);
  assert.equal(back.model, 'm1');
  assert.deepEqual([...back.data], [...data]);
  assert.throws(() => decodeShard(buf.subarray(0, buf.length - 5)), /checksum|short/);
  const flipped = Buffer.from(buf);
  flipped[flipped.length - 40]! ^= 1;
  assert.throws(() => decodeShard(flipped), /checksum/);
  assert.throws(() => decodeShard(Buffer.from('hello world, not a shard at all, no no no no no')), /magic/);
});

test('input keys: same text and image bytes give one key; the path does not matter', () => {
  const img = new Uint8Array([9, 8, 7]);
  assert.equal(inputKey('x', imageDigest(img)), inputKey('x', imageDigest(Uint8Array.from(img))));
  assert.notEqual(inputKey('x', imageDigest(img)), inputKey('x', null));
  assert.notEqual(inputKey('x', null), inputKey('y', null));
  // No ambiguity between a text holding the separator and another image.
  assert.notEqual(inputKey('a\0-', null), inputKey('a', null));
});

test('puts reach disk at flush as immutable shards; a reopened cache hits; flushRows triggers automatic flushes', async () => {
  const root = path.join(dir, 'c1');
  const c = await EmbeddingCache.open(root, ID, { flushRows: 3 });
  assert.ok(existsSync(path.join(c.dir!, IDENTITY_FILE)));
  for (let i = 0; i < 7; i++) await c.put(inputKey(`t${i}`, null), vec(i));
  assert.equal((await shardsOf(c.dir!)).length, 2, 'two automatic flushes of 3 rows');
  await c.flush();
  assert.equal((await shardsOf(c.dir!)).length, 3);
  assert.equal(c.stats.written, 7);
  await c.flush(); // nothing waiting: no empty shard
  assert.equal((await shardsOf(c.dir!)).length, 3);

  const again = await EmbeddingCache.open(root, ID);
  assert.equal(again.size, 7);
  assert.equal(again.dim, 4);
  for (let i = 0; i < 7; i++) assert.deepEqual([...again.get(inputKey(`t${i}`, null))!], [...vec(i)]);
  assert.equal(again.get(inputKey('nope', null)), undefined);
  assert.deepEqual([again.stats.hits, again.stats.misses], [7, 1]);
  await assert.rejects(again.put(inputKey('wrong-dim', null), vec(1, 5)), /dimension 5 does not fit the cache's 4/);

  // Another model identity lives in another folder and sees nothing.
  const other = await EmbeddingCache.open(root, { ...ID, settings: { max_length: 64 } });
  assert.notEqual(other.dir, again.dir);
  assert.equal(other.size, 0);
});

test('a corrupt shard is reported by file name, set aside and its entries recomputed; the others stay', async () => {
  const root = path.join(dir, 'c2');
  const c = await EmbeddingCache.open(root, ID, { flushRows: 2 });
  for (let i = 0; i < 4; i++) await c.put(inputKey(`t${i}`, null), vec(i));
  const [first, second] = await shardsOf(c.dir!);
  const bad = path.join(c.dir!, first!);
  const bytes = await fsp.readFile(bad);
  await fsp.writeFile(bad, bytes.subarray(0, bytes.length - 7)); // torn write
  const warnings: string[] = [];
  const re = await EmbeddingCache.open(root, ID, { log: { warn: (m) => void warnings.push(m) } });
  assert.equal(warnings.length, 1);
  assert.ok(warnings[0]!.includes(bad), warnings[0]);
  assert.match(warnings[0]!, /checksum mismatch/);
  assert.deepEqual(re.stats.corrupt, [bad]);
  assert.equal(re.size, 2);
  assert.ok(existsSync(`${bad}.corrupt`) && !existsSync(bad));
  assert.ok(existsSync(path.join(c.dir!, second!)));
  // Reopening again reports nothing: the bad file is out of the way.
  const warnings2: string[] = [];
  await EmbeddingCache.open(root, ID, { log: { warn: (m) => void warnings2.push(m) } });
  assert.deepEqual(warnings2, []);
});

test('many shards are merged into one on open', async () => {
  const root = path.join(dir, 'c3');
  const c = await EmbeddingCache.open(root, ID, { flushRows: 1 });
  for (let i = 0; i < 6; i++) await c.put(inputKey(`t${i}`, null), vec(i));
  assert.equal((await shardsOf(c.dir!)).length, 6);
  const merged = await EmbeddingCache.open(root, ID, { compactAbove: 4 });
  assert.equal((await shardsOf(c.dir!)).length, 1);
  assert.equal(merged.size, 6);
  const re = await EmbeddingCache.open(root, ID);
  assert.equal(re.size, 6);
  assert.deepEqual([...re.get(inputKey('t5', null))!], [...vec(5)]);
});

test('the model identity changes with the checkpoint files and the adapter contents, not with the adapter path', async () => {
  const ck = path.join(dir, 'ck');
  const ad = path.join(dir, 'ad');
  await fsp.mkdir(ck);
  await fsp.mkdir(ad);
  await fsp.writeFile(path.join(ck, 'config.json'), '{}');
  await fsp.writeFile(path.join(ck, 'model.safetensors'), 'weights');
  await fsp.writeFile(path.join(ck, 'README.md'), 'ignored');
  await fsp.writeFile(path.join(ad, 'adapter_config.json'), '{"r": 4}');
  await fsp.writeFile(path.join(ad, 'adapter_model.safetensors'), 'lora-1');
  const key = async (adapters: string[], settings = { max_length: 8 }) => modelKey(await modelIdentity(ck, adapters, settings));
  const base = await key([]);
  assert.equal(await key([]), base);
  const withAdapter = await key([ad]);
  assert.notEqual(withAdapter, base);
  assert.notEqual(await key([], { max_length: 9 }), base);
  await fsp.cp(ad, path.join(dir, 'ad-copy'), { recursive: true });
  assert.equal(await key([path.join(dir, 'ad-copy')]), withAdapter);
  await fsp.writeFile(path.join(ad, 'adapter_model.safetensors'), 'lora-2');
  assert.notEqual(await key([ad]), withAdapter);
  await fsp.writeFile(path.join(ck, 'README.md'), 'still ignored');
  assert.equal(await key([]), base);
  await fsp.writeFile(path.join(ck, 'model.safetensors'), 'weights, retrained');
  assert.notEqual(await key([]), base);
  const id = await modelIdentity(ck, [ad], {});
  assert.deepEqual(id.files.map((f) => f.name), ['config.json', 'model.safetensors']);
  assert.equal(id.adapters[0]!.sha256.length, 64);
});
