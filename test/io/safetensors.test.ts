import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fixture, tempDir } from '../helpers.js';
import { Rng } from '../../src/runtime/rng.js';
import { UnimeError } from '../../src/errors.js';
import { DTYPES, SUPPORTED_DTYPES, type Dtype, fromFloat32, toFloat32 } from '../../src/io/dtypes.js';
import {
  MAX_HEADER_BYTES,
  SafetensorsError,
  SafetensorsFile,
  type TensorInput,
  compareForLayout,
  parseHeader,
  writeSafetensors,
} from '../../src/io/safetensors.js';
import { sidecar, inputOf, assertMatchesStored, assertMatchesFloat32 } from './sidecar.js';

const FILES = Object.keys(sidecar.files);

test('sidecar lists the fixture files and which writer made them', () => {
  assert.deepEqual(FILES.sort(), ['dtypes.safetensors', 'empty.safetensors', 'plain.safetensors', 'scalars.safetensors']);
  assert.ok(sidecar.writer.length > 0);
});

for (const file of FILES) {
  test(`reads ${file} and matches the sidecar`, async () => {
    const want = sidecar.files[file]!;
    const f = await SafetensorsFile.open(fixture('safetensors', file));
    try {
      assert.deepEqual([...f.names].sort(), Object.keys(want.tensors).sort());
      assert.deepEqual(f.metadata ?? null, want.metadata);
      for (const [name, t] of Object.entries(want.tensors)) {
        const info = f.info(name);
        assert.equal(info.dtype, t.dtype, name);
        assert.deepEqual([...info.shape], t.shape, name);
        assert.equal(info.numel, t.shape.reduce((a, b) => a * b, 1), name);
        assert.equal(info.byteLength, info.numel * DTYPES[t.dtype].itemSize, name);
        assert.equal(Buffer.from(await f.readBytes(name)).toString('hex'), t.hex, name);
        const stored = await f.read(name);
        assert.ok(stored instanceof DTYPES[t.dtype].array, `${name}: ${stored.constructor.name}`);
        assertMatchesStored(name, stored, t);
        assertMatchesFloat32(name, await f.readFloat32(name), t);
      }
    } finally {
      await f.close();
    }
  });

  test(`our writer reproduces ${file} byte for byte (${sidecar.writer.split(' (')[0]})`, async () => {
    const want = sidecar.files[file]!;
    const { dir, cleanup } = await tempDir();
    try {
      // Hand the tensors over in reverse order: the layout must not depend on it.
      const entries = Object.entries(want.tensors).reverse().map(([n, t]) => [n, inputOf(t)] as [string, TensorInput]);
      const out = path.join(dir, file);
      await writeSafetensors(out, entries, want.metadata ? { metadata: want.metadata } : {});
      assert.deepEqual(await fsp.readFile(out), readFileSync(fixture('safetensors', file)));
    } finally {
      await cleanup();
    }
  });
}

test('layout order: dtype in the library enum order (descending), then name by UTF-8 bytes', async () => {
  const f = await SafetensorsFile.open(fixture('safetensors', 'dtypes.safetensors'));
  await f.close();
  assert.deepEqual(f.names, ['u64', 'i64', 'f64', 'Zeta.weight', 'a.weight', 'f32', 'é.weight', 'u32', 'i32', 'bf16', 'f16', 'u16', 'i16', 'i8', 'u8', 'bool']);
  const infos = f.names.map((name) => ({ name, dtype: f.info(name).dtype }));
  assert.deepEqual([...infos].sort(compareForLayout), infos);
  // Code-unit order would put U+FFFD (3 UTF-8 bytes) after an astral character (4 bytes, surrogates D8xx); byte order does not.
  assert.ok(compareForLayout({ name: '\u{1F600}', dtype: 'F32' }, { name: '\uFFFD', dtype: 'F32' }) > 0);
});

function randomTensor(dtype: Dtype, shape: number[], rng: Rng): TensorInput {
  const n = shape.reduce((a, b) => a * b, 1);
  const info = DTYPES[dtype];
  const bytes = new Uint8Array(n * info.itemSize);
  for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(256);
  if (dtype === 'BOOL') for (let i = 0; i < n; i++) bytes[i] = rng.int(2);
  return { dtype, shape, data: new info.array(bytes.buffer, 0, n) };
}

test('round trip of every dtype, random shapes and bit patterns, through typed arrays', async () => {
  const rng = new Rng(7);
  const { dir, cleanup } = await tempDir();
  try {
    const tensors: Record<string, TensorInput> = {};
    for (const d of SUPPORTED_DTYPES) {
      for (let k = 0; k < 3; k++) {
        const rank = rng.int(4);
        const shape = Array.from({ length: rank }, () => rng.int(5));
        tensors[`${d.toLowerCase()}.${k}`] = randomTensor(d, shape, rng);
      }
    }
    const out = path.join(dir, 'rt.safetensors');
    const { fileSize } = await writeSafetensors(out, tensors, { metadata: { format: 'pt', '1': 'integer-like key', 'ü': 'ß' } });
    assert.equal((await fsp.stat(out)).size, fileSize);
    const f = await SafetensorsFile.open(out);
    try {
      assert.deepEqual(f.metadata, { '1': 'integer-like key', format: 'pt', 'ü': 'ß' });
      assert.equal(f.names.length, Object.keys(tensors).length);
      for (const [name, t] of Object.entries(tensors)) {
        const got = await f.read(name);
        assert.equal(got.constructor, t.data.constructor, name);
        assert.deepEqual(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength), name);
        assert.deepEqual([...f.info(name).shape], t.shape);
      }
      assert.equal((f.header.headerLength) % 8, 0);
    } finally {
      await f.close();
    }
  } finally {
    await cleanup();
  }
});

test('float round trip: f32 values stored as F16/BF16/F64 read back as their exact conversions', async () => {
  const rng = new Rng(8);
  const v = rng.fillNormal(new Float32Array(1000), 0, 100);
  v.set([0, -0, Infinity, -Infinity, NaN, 1e-7, 65504, 70000, 3.4e38, 1e-40]);
  const { dir, cleanup } = await tempDir();
  try {
    const out = path.join(dir, 'f.safetensors');
    const dts = ['F16', 'BF16', 'F32', 'F64'] as const;
    await writeSafetensors(out, Object.fromEntries(dts.map((d) => [d, { dtype: d, shape: [10, 100], data: fromFloat32(d, v) }])));
    const f = await SafetensorsFile.open(out);
    for (const d of dts) {
      const got = await f.readFloat32(d);
      const want = toFloat32(d, fromFloat32(d, v));
      assert.equal(got.length, 1000);
      for (let i = 0; i < 1000; i++) assert.ok(Object.is(got[i], want[i]) || (Number.isNaN(got[i]) && Number.isNaN(want[i])), `${d}[${i}]`);
      if (d === 'F32' || d === 'F64') for (let i = 0; i < 1000; i++) assert.ok(Object.is(got[i], v[i]) || Number.isNaN(v[i]!), `${d}[${i}] exact`);
    }
    await f.close();
  } finally {
    await cleanup();
  }
});

test('writer accepts a Record, a Map or [name, tensor] pairs, and the same tensors give the same bytes', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const a: TensorInput = { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) };
    const b: TensorInput = { dtype: 'I8', shape: [3], data: new Uint8Array([1, 2, 255]) };
    const p1 = path.join(dir, '1.safetensors'), p2 = path.join(dir, '2.safetensors'), p3 = path.join(dir, '3.safetensors');
    await writeSafetensors(p1, { a, b });
    await writeSafetensors(p2, new Map([['b', b], ['a', a]]));
    await writeSafetensors(p3, [['b', b], ['a', a]]);
    const bytes = await fsp.readFile(p1);
    assert.deepEqual(await fsp.readFile(p2), bytes);
    assert.deepEqual(await fsp.readFile(p3), bytes);
    const f = await SafetensorsFile.open(p1);
    assert.deepEqual([...(await f.read('b'))], [1, 2, -1]);
    await f.close();
  } finally {
    await cleanup();
  }
});

test('writer refuses bad tensors with an error naming the tensor, and writes nothing', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const out = path.join(dir, 'bad.safetensors');
    const cases: [unknown, RegExp][] = [
      [{ w: { dtype: 'F32', shape: [2, 3], data: new Float32Array(5) } }, /w: shape \[2, 3\] of F32 needs 24 bytes but the data has 20/],
      [{ w: { dtype: 'F16', shape: [2], data: new Float32Array(1) } }, /w: F16 data given as Float32Array/],
      [{ w: { dtype: 'F8_E4M3', shape: [1], data: new Uint8Array(1) } }, /w: dtype F8_E4M3 is a valid safetensors dtype that unime does not support/],
      [{ w: { dtype: 'f32', shape: [1], data: new Uint8Array(4) } }, /w: unknown dtype "f32"[\s\S]*supported dtypes are F64, F32/],
      [{ w: { dtype: 'F32', shape: [-1], data: new Uint8Array(0) } }, /w: shape\[0\] must be a non-negative integer, got -1/],
      [{ w: { dtype: 'F32', shape: [1.5], data: new Uint8Array(0) } }, /w: shape\[0\] must be a non-negative integer/],
      [{ w: { dtype: 'F32', shape: [1], data: [1, 2, 3, 4] } }, /w: data must be a typed array/],
      [[['w', { dtype: 'U8', shape: [0], data: new Uint8Array(0) }], ['w', { dtype: 'U8', shape: [0], data: new Uint8Array(0) }]], /w: tensor name given twice/],
      [{ __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } }, /__metadata__: "__metadata__" is reserved/],
      [{ 'a\uD800': { dtype: 'U8', shape: [0], data: new Uint8Array(0) } }, /lone surrogate/],
    ];
    for (const [tensors, re] of cases) {
      await assert.rejects(writeSafetensors(out, tensors as Record<string, TensorInput>), (e: unknown) => e instanceof SafetensorsError && re.test(e.message) && e.message.includes(out), String(re));
    }
    await assert.rejects(
      writeSafetensors(out, {}, { metadata: { n: 3 as unknown as string } }),
      (e: unknown) => e instanceof SafetensorsError && /__metadata__\.n: metadata value must be a string, got 3/.test(e.message),
    );
    assert.deepEqual(await fsp.readdir(dir), []);
  } finally {
    await cleanup();
  }
});

test('atomic write: a write that fails midway leaves the old file intact and no temp files', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const out = path.join(dir, 'model.safetensors');
    await writeSafetensors(out, { old: { dtype: 'F32', shape: [1], data: new Float32Array([42]) } });
    const before = await fsp.readFile(out);
    const big = new Float32Array(1 << 16);
    let calls = 0;
    await assert.rejects(
      writeSafetensors(out, { a: { dtype: 'F32', shape: [big.length], data: big }, b: { dtype: 'F32', shape: [big.length], data: big } }, {
        onTensorWritten: () => {
          calls++;
          throw new Error('disk pulled out');
        },
      }),
      /disk pulled out/,
    );
    assert.equal(calls, 1);
    assert.deepEqual(await fsp.readFile(out), before);
    assert.deepEqual(await fsp.readdir(dir), ['model.safetensors']);
    const f = await SafetensorsFile.open(out);
    assert.deepEqual([...(await f.readFloat32('old'))], [42]);
    await f.close();
  } finally {
    await cleanup();
  }
});

test('lazy reads: open parses only the header; a read touches only that tensor\'s bytes', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    // A 3 GiB file, sparse: the huge first tensor is never written (and never read).
    const hugeBytes = 3 * 2 ** 30;
    const tail = new Float32Array([1.5, -2.5, 3.5]);
    const header = JSON.stringify({
      huge: { dtype: 'F32', shape: [hugeBytes / 4], data_offsets: [0, hugeBytes] },
      tail: { dtype: 'F32', shape: [3], data_offsets: [hugeBytes, hugeBytes + 12] },
    });
    const n = Math.ceil(header.length / 8) * 8;
    const head = Buffer.alloc(8 + n, 0x20);
    head.writeBigUInt64LE(BigInt(n), 0);
    head.write(header, 8);
    const out = path.join(dir, 'sparse.safetensors');
    const h = await fsp.open(out, 'w');
    await h.write(head, 0, head.length, 0);
    await h.write(Buffer.from(tail.buffer), 0, 12, 8 + n + hugeBytes);
    await h.close();
    assert.equal((await fsp.stat(out)).size, 8 + n + hugeBytes + 12);

    // opening reads the header only: nothing of the 4 GiB tensor (bytesRead), however long the file
    const f = await SafetensorsFile.open(out);
    assert.equal(f.bytesRead, 0);
    assert.equal(f.info('huge').byteLength, hugeBytes);
    assert.deepEqual([...(await f.readFloat32('tail'))], [1.5, -2.5, 3.5]);
    assert.equal(f.bytesRead, 12);
    // After release() the handle is reopened on demand; after close() reads fail clearly.
    await f.release();
    assert.deepEqual([...(await f.read('tail'))], [1.5, -2.5, 3.5]);
    await f.close();
    await assert.rejects(f.read('tail'), (e: unknown) => e instanceof SafetensorsError && /read after close/.test(e.message));
  } finally {
    await cleanup();
  }
});

test('reader errors: missing file, directory, unknown tensor, file truncated after opening', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await assert.rejects(SafetensorsFile.open(path.join(dir, 'nope.safetensors')), (e: unknown) => e instanceof SafetensorsError && /nope\.safetensors: no such file/.test(e.message));
    await assert.rejects(SafetensorsFile.open(dir), (e: unknown) => e instanceof SafetensorsError && /is not a regular file[\s\S]*openCheckpoint/.test(e.message));
    const out = path.join(dir, 'x.safetensors');
    await writeSafetensors(out, { a: { dtype: 'F32', shape: [4], data: new Float32Array(4) } });
    const f = await SafetensorsFile.open(out);
    assert.throws(() => f.info('b'), (e: unknown) => e instanceof SafetensorsError && /x\.safetensors: b: no tensor named "b"/.test(e.message));
    await f.release();
    await fsp.truncate(out, 20);
    await assert.rejects(f.read('a'), (e: unknown) => e instanceof SafetensorsError && /file changed since it was opened/.test(e.message));
    await f.close();
    await assert.rejects(SafetensorsFile.open(out), (e: unknown) => e instanceof SafetensorsError);
  } finally {
    await cleanup();
  }
});

// ---------------------------------------------------------------------------------------------
// Header validation, case by case

function file(header: string | object, dataLength: number, opts: { n?: number; pad?: boolean } = {}): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const json = Buffer.from(text, 'utf8');
  const n = opts.n ?? (opts.pad === false ? json.length : Math.ceil(json.length / 8) * 8);
  const out = Buffer.alloc(8 + Math.max(n, json.length) + dataLength, 0x20);
  out.writeBigUInt64LE(BigInt(n), 0);
  json.copy(out, 8);
  out.fill(0, 8 + Math.max(n, json.length));
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

const t = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });

const BAD: [string, Uint8Array, RegExp][] = [
  ['empty file', new Uint8Array(0), /file is 0 bytes, too short for the 8-byte header length/],
  ['7 bytes', new Uint8Array(7), /file is 7 bytes, too short/],
  ['header length over the cap', (() => { const b = Buffer.alloc(16); b.writeBigUInt64LE(BigInt(MAX_HEADER_BYTES + 1)); return new Uint8Array(b); })(), /over the 100000000-byte limit/],
  ['header length 2^64-1', new Uint8Array(16).fill(0xff), /above 2\^53[\s\S]*over the 100000000-byte limit/],
  ['zip file', new Uint8Array(Buffer.from('PK\x03\x04\x14\x00\x00\x00\x08\x00')), /zip archive/],
  ['header past the end', (() => { const b = Buffer.alloc(16); b.writeBigUInt64LE(9n); return new Uint8Array(b); })(), /header length 9 .* runs past the end of the file \(16 bytes\)/],
  ['not UTF-8', (() => { const b = Buffer.alloc(16, 0x20); b.writeBigUInt64LE(8n); b[8] = 0xff; return new Uint8Array(b); })(), /not valid UTF-8/],
  ['not JSON', file('{"a": }', 0), /header is not valid JSON at character 7 of the header: expected a value, found '}'/],
  ['BOM', file('\uFEFF{}', 0), /not valid JSON at character 1/],
  ['array', file('[]', 0), /header must be a JSON object, got an array/],
  ['number', file('42', 0), /header must be a JSON object, got 42/],
  ['entry not an object', file({ a: 3 }, 0), /a: tensor entry must be an object/],
  ['missing dtype', file({ a: { shape: [], data_offsets: [0, 4] } }, 4), /a: tensor entry has no "dtype"/],
  ['missing shape', file({ a: { dtype: 'F32', data_offsets: [0, 4] } }, 4), /a: tensor entry has no "shape"/],
  ['missing offsets', file({ a: { dtype: 'F32', shape: [] } }, 4), /a: tensor entry has no "data_offsets"/],
  ['dtype not a string', file({ a: t(7 as never, [], [0, 4]) }, 4), /a: "dtype" must be a string, got 7/],
  ['unknown dtype', file({ a: t('F128', [1], [0, 16]) }, 16), /a: unknown dtype "F128"\n  fix: supported dtypes are F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL/],
  ['fp8', file({ a: t('F8_E4M3', [1], [0, 1]) }, 1), /a: dtype F8_E4M3 is a valid safetensors dtype that unime does not support/],
  ['shape not an array', file({ a: t('F32', 4, [0, 4]) }, 4), /a: "shape" must be an array/],
  ['negative dim', file({ a: t('F32', [-1], [0, 4]) }, 4), /a: "shape"\[0\] must be a non-negative integer, got -1/],
  ['fractional dim', file({ a: t('F32', [1, 0.5], [0, 4]) }, 4), /a: "shape"\[1\] must be a non-negative integer, got 0.5/],
  ['string dim', file({ a: t('F32', ['1'], [0, 4]) }, 4), /"shape"\[0\] must be a non-negative integer, got "1"/],
  ['huge dim', file({ a: t('F32', [1e300], [0, 4]) }, 4), /"shape"\[0\] must be a non-negative integer, got 1e\+300/],
  ['overflowing numel', file({ a: t('F32', [2 ** 40, 2 ** 40], [0, 4]) }, 4), /needs 4835703278458516698824704 bytes but data_offsets \[0, 4\] span 4/],
  ['offsets not a pair', file({ a: t('F32', [1], [0, 4, 8]) }, 4), /a: "data_offsets" must be \[begin, end\]/],
  ['negative offset', file({ a: t('F32', [1], [-4, 0]) }, 4), /"data_offsets" must be \[begin, end\] with non-negative integers, got \[-4,0\]/],
  ['float offset', file({ a: t('F32', [1], [0, 4.5]) }, 4), /"data_offsets" must be/],
  ['reversed offsets', file({ a: t('F32', [0], [4, 0]) }, 4), /a: "data_offsets" \[4, 0\] ends before it begins/],
  ['size mismatch', file({ a: t('F32', [2, 2], [0, 12]) }, 12), /a: shape \[2,2\] of F32 needs 16 bytes but data_offsets \[0, 12\] span 12/],
  ['truncated', file({ a: t('F32', [4], [0, 16]) }, 8), /a: data ends at byte 16 of the data section, but the file has only 8 bytes of data: the file is truncated/],
  ['hole at the start', file({ a: t('F32', [1], [4, 8]) }, 8), /a: bytes 0\.\.4 of the data section belong to no tensor/],
  ['hole between', file({ a: t('F32', [1], [0, 4]), b: t('F32', [1], [8, 12]) }, 12), /b: bytes 4\.\.8 of the data section belong to no tensor \(a hole before this tensor, after "a"\)/],
  ['overlap', file({ a: t('F32', [2], [0, 8]), b: t('F32', [1], [4, 8]) }, 8), /b: data_offsets \[4, 8\] overlap tensor "a", which ends at 8/],
  ['same offsets twice', file({ a: t('F32', [1], [0, 4]), b: t('F32', [1], [0, 4]) }, 4), /overlap tensor "a"/],
  ['trailing bytes', file({ a: t('F32', [1], [0, 4]) }, 12), /data section is 12 bytes but its tensors cover only 4: 8 trailing bytes belong to no tensor/],
  ['metadata not an object', file({ __metadata__: 'x' }, 0), /__metadata__: "__metadata__" must be an object of string values, got "x"[\s\S]*reserved/],
  ['a tensor named __metadata__', file({ __metadata__: t('F32', [1], [0, 4]) }, 4), /__metadata__\.shape: metadata value for "shape" must be a string, got \[1\]/],
  ['metadata number value', file({ __metadata__: { a: 1 } }, 0), /__metadata__\.a: metadata value for "a" must be a string, got 1/],
  ['duplicate names', file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4), /header names "a" more than once/],
];

for (const [what, bytes, re] of BAD) {
  test(`parseHeader refuses: ${what}`, () => {
    assert.throws(
      () => parseHeader(bytes, bytes.length, 'bad.safetensors'),
      (e: unknown) => {
        assert.ok(e instanceof SafetensorsError, `not a SafetensorsError: ${e}`);
        assert.ok(e instanceof UnimeError);
        assert.match(e.message, /^bad\.safetensors/);
        assert.match(e.message, re);
        assert.ok(e.fix, 'has a fix');
        return true;
      },
    );
  });
}

test('parseHeader accepts: no tensors, zero-element tensors anywhere, spaces after the JSON, null metadata, extra entry fields', () => {
  assert.equal(parseHeader(file({}, 0), file({}, 0).length, 'x').tensors.size, 0);
  const ok = file({ z: t('F32', [0, 5], [0, 0]), a: { ...t('F32', [1], [0, 4]), extra: 1 }, e: t('U8', [2, 0], [4, 4]), b: t('U8', [], [4, 5]), __metadata__: null }, 5);
  const hh = parseHeader(ok, ok.length, 'x');
  assert.deepEqual([...hh.tensors.keys()], ['z', 'a', 'e', 'b']);
  assert.equal(hh.tensors.get('b')!.numel, 1);
  assert.equal(hh.tensors.get('z')!.numel, 0);
  assert.equal(hh.metadata, undefined);
});
