/**
 * Malformed safetensors files, generated from a fixed seed: each must either parse (and then
 * every tensor must read, or fail with a SafetensorsError) or be refused with a SafetensorsError
 * that says something. Any other exception (TypeError, RangeError, a crash) fails the test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fixture, tempDir } from '../helpers.js';
import { Rng } from '../../src/runtime/rng.js';
import { toFloat32, typedArrayFromBytes } from '../../src/io/dtypes.js';
import { SafetensorsError, SafetensorsFile, parseHeader, type SafetensorsHeader } from '../../src/io/safetensors.js';

const valid = ['dtypes.safetensors', 'scalars.safetensors', 'plain.safetensors', 'empty.safetensors'].map(
  (f) => new Uint8Array(readFileSync(fixture('safetensors', f))),
);

interface Case {
  kind: string;
  bytes: Uint8Array;
}

function headerOf(bytes: Uint8Array): { json: Record<string, unknown>; data: Uint8Array } {
  const n = Number(Buffer.from(bytes.buffer, bytes.byteOffset, 8).readBigUInt64LE(0));
  const json = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8')) as Record<string, unknown>;
  return { json, data: bytes.subarray(8 + n) };
}

function assemble(headerText: string, data: Uint8Array, rng: Rng): Uint8Array {
  const json = Buffer.from(headerText, 'utf8');
  const padTo8 = rng.int(4) !== 0;
  const n = padTo8 ? Math.ceil(json.length / 8) * 8 : json.length;
  const out = new Uint8Array(8 + n + data.length).fill(0x20, 8, 8 + n);
  Buffer.from(out.buffer).writeBigUInt64LE(BigInt(n), 0);
  out.set(json, 8);
  out.set(data, 8 + n);
  return out;
}

const WEIRD_VALUES: (() => unknown)[] = [
  () => null,
  () => true,
  () => 'F32',
  () => '',
  () => -1,
  () => 0,
  () => 1.5,
  () => 1e308,
  () => -1e308,
  () => 2 ** 53,
  () => 2 ** 53 + 2,
  () => 2 ** 64,
  () => Number.MAX_SAFE_INTEGER,
  () => [],
  () => [0],
  () => [-1, 4],
  () => [4, 0],
  () => [0, 2 ** 62],
  () => [1e300, 1e300],
  () => [0.5, 1],
  () => ['0', '4'],
  () => [[0], [4]],
  () => ({}),
  () => ({ dtype: 'F32' }),
  () => 'F8_E4M3',
  () => 'f32',
  () => 'BF16 ',
  () => '\u0000',
  () => 'toString',
  () => '__proto__',
  () => [2 ** 31, 2 ** 31, 2 ** 31],
  () => [0, 2 ** 53],
];

function deepNest(depth: number, open: string, close: string, inner = '0'): string {
  return open.repeat(depth) + inner + close.repeat(depth);
}

/** One mutation of a valid header; returns the header text. */
function mutateHeader(json: Record<string, unknown>, rng: Rng): string {
  const h = structuredClone(json) as Record<string, Record<string, unknown>>;
  const names = Object.keys(h).filter((k) => k !== '__metadata__');
  const pick = <T>(a: T[]): T => a[rng.int(a.length)]!;
  const name = names.length ? pick(names) : 'x';
  let entry = h[name] as Record<string, unknown> | undefined;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) entry = h[name] = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
  switch (rng.int(16)) {
    case 0: // wrong type for a field
      entry[pick(['dtype', 'shape', 'data_offsets'])] = pick(WEIRD_VALUES)();
      break;
    case 1: // delete a field
      delete entry[pick(['dtype', 'shape', 'data_offsets'])];
      break;
    case 2: { // lie about offsets
      const o = entry.data_offsets as number[];
      if (Array.isArray(o)) o[rng.int(2)] = (o[rng.int(2)] ?? 0) + pick([-8, -4, -2, -1, 1, 2, 4, 8, 1000, 2 ** 40]);
      break;
    }
    case 3: { // lie about the shape
      const s = entry.shape as number[];
      if (Array.isArray(s) && s.length) s[rng.int(s.length)] = pick([0, 2, 3, 7, 2 ** 31, 2 ** 52, -3, 0.25]);
      else entry.shape = [pick([1, 2, 1 << 30])];
      break;
    }
    case 4: // another dtype (same or different size)
      entry.dtype = pick(['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'U64', 'C64', 'F4', 'F6_E2M3', 'Q4_K', 'float32']);
      break;
    case 5: // negative / huge dims
      entry.shape = Array.from({ length: 1 + rng.int(6) }, () => pick([-1, 0, 1, 2 ** 20, 2 ** 53, 1e21, -0]));
      break;
    case 6: // metadata mischief
      h.__metadata__ = pick([{ a: 1 }, { a: null }, 'meta', [], { a: { b: 'c' } }, null, { ok: 'yes' }, { dtype: 'F32', shape: [1], data_offsets: [0, 4] }]) as Record<string, unknown>;
      break;
    case 7: // a tensor that overlaps or duplicates another
      h[`${name}.copy`] = structuredClone(entry);
      break;
    case 8: // drop a tensor (leaves a hole)
      delete h[name];
      break;
    case 9: // the entry is not an object
      h[name] = pick(WEIRD_VALUES)() as Record<string, unknown>;
      break;
    case 10: // deep nesting in some value
      return JSON.stringify(h).replace(/"shape":\[/, `"shape":[${deepNest(1 + rng.int(20000), '[', ']')},`);
    case 11: // deep nesting of objects in metadata
      return JSON.stringify(h).replace(/^\{/, `{"__metadata__":${deepNest(1 + rng.int(5000), '{"a":', '}', '"x"')},`);
    case 12: { // raw text surgery: cut or duplicate a slice of the JSON
      const s = JSON.stringify(h);
      const i = rng.int(s.length + 1), j = Math.min(s.length, i + rng.int(20));
      return rng.int(2) ? s.slice(0, i) + s.slice(j) : s.slice(0, j) + s.slice(i);
    }
    case 13: { // duplicate key in text
      const s = JSON.stringify(h);
      return s.replace(/^\{/, `{${JSON.stringify(name)}:${JSON.stringify(entry)},`);
    }
    case 14: // unicode and odd names
      h[pick(['', '\u{1F600}', 'é', '\u0000', '__proto__', 'constructor', 'a'.repeat(1000)])] = structuredClone(entry);
      delete h[name];
      break;
    default: // a whole new random entry
      h[`r${rng.int(100)}`] = { dtype: pick(['F32', 'U8', 'BF16']), shape: [rng.int(5)], data_offsets: [rng.int(64), rng.int(64)] };
  }
  return JSON.stringify(h);
}

function generateCases(): Case[] {
  const rng = new Rng('safetensors-fuzz');
  const cases: Case[] = [];

  // 1. Random bytes, with a random, a small, or an exactly fitting length prefix.
  for (let i = 0; i < 1500; i++) {
    const len = rng.int(i % 10 === 0 ? 4096 : 96);
    const b = new Uint8Array(len);
    for (let k = 0; k < len; k++) b[k] = rng.int(256);
    if (len >= 8 && rng.int(2)) {
      const n = rng.int(2) ? rng.int(len - 7) : len - 8;
      Buffer.from(b.buffer).writeBigUInt64LE(BigInt(n), 0);
      if (rng.int(2) && n > 0) b[8] = 0x7b; // '{'
    }
    cases.push({ kind: 'random bytes', bytes: b });
  }

  // 2. Every truncation of two small valid files.
  for (const v of valid.slice(1, 3).concat([valid[0]!])) {
    for (let len = 0; len < v.length; len++) cases.push({ kind: 'truncation', bytes: v.slice(0, len) });
  }

  // 3. Random byte flips, in the header or anywhere.
  for (let i = 0; i < 1500; i++) {
    const v = valid[rng.int(valid.length)]!;
    const b = v.slice();
    const headerEnd = 8 + Number(Buffer.from(v.buffer, v.byteOffset, 8).readBigUInt64LE(0));
    const flips = 1 + rng.int(3);
    for (let k = 0; k < flips; k++) {
      const at = rng.int(2) ? rng.int(headerEnd) : rng.int(b.length);
      b[at] = rng.int(3) === 0 ? b[at]! ^ (1 << rng.int(8)) : rng.int(256);
    }
    cases.push({ kind: 'byte flips', bytes: b });
  }

  // 4. Structured header mutations, with the original data section (sometimes resized).
  for (let i = 0; i < 2200; i++) {
    const v = valid[rng.int(valid.length)]!;
    const { json, data } = headerOf(v);
    let text = mutateHeader(json, rng);
    if (rng.int(5) === 0 && !/\[\[\[|\{"a":\{"a":/.test(text)) text = mutateHeader(JSON.parse(safeParse(text)), rng);
    let d = data;
    const r = rng.int(6);
    if (r === 0) d = data.subarray(0, rng.int(data.length + 1));
    else if (r === 1) d = new Uint8Array(data.length + 1 + rng.int(16));
    cases.push({ kind: 'header mutation', bytes: assemble(text, d, rng) });
  }

  // 5. Length prefixes that lie about a valid header.
  for (let i = 0; i < 300; i++) {
    const b = valid[rng.int(valid.length)]!.slice();
    const n = Number(Buffer.from(b.buffer).readBigUInt64LE(0));
    const lie = [n - 1, n + 1, n - 8, n + 8, 0, 2, b.length - 8, b.length, 2 ** 32 + n, Number.MAX_SAFE_INTEGER, 100_000_000, 100_000_001][rng.int(12)]!;
    Buffer.from(b.buffer).writeBigUInt64LE(BigInt(Math.max(0, lie)), 0);
    cases.push({ kind: 'lying length', bytes: b });
  }
  return cases;
}

function safeParse(text: string): string {
  try {
    JSON.parse(text);
    return text;
  } catch {
    return '{}';
  }
}

/** Read every tensor of an in-memory file the way SafetensorsFile does. */
function readAllInMemory(h: SafetensorsHeader, bytes: Uint8Array): void {
  let covered = 0;
  for (const [, info] of h.tensors) {
    const [b, e] = info.dataOffsets;
    assert.ok(b === covered && e >= b && h.dataStart + e <= bytes.length, 'tensors tile the data section');
    covered = e;
    const slice = bytes.slice(h.dataStart + b, h.dataStart + e);
    const arr = typedArrayFromBytes(info.dtype, slice);
    assert.equal(arr.length, info.numel);
    assert.equal(toFloat32(info.dtype, slice).length, info.numel);
  }
  assert.equal(covered, h.dataLength);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.subarray(0, 200)).toString('hex') + (b.length > 200 ? '...' : '');
}

test('fuzz: thousands of malformed headers fail only with a SafetensorsError (parseHeader)', () => {
  const t0 = performance.now();
  const cases = generateCases();
  assert.ok(cases.length >= 5000, `${cases.length} cases`);
  const outcome: Record<string, { ok: number; refused: number }> = {};
  for (const c of cases) {
    const o = (outcome[c.kind] ??= { ok: 0, refused: 0 });
    try {
      const h = parseHeader(c.bytes, c.bytes.length, 'fuzz.safetensors');
      readAllInMemory(h, c.bytes);
      o.ok++;
    } catch (e) {
      if (!(e instanceof SafetensorsError)) assert.fail(`${c.kind}: ${(e as Error)?.stack ?? e}\ninput: ${hex(c.bytes)}`);
      assert.ok(e.problem.length > 0 && e.message.startsWith('fuzz.safetensors'), `${c.kind}: empty message`);
      o.refused++;
    }
  }
  const ms = performance.now() - t0;
  // Every kind of case must have been refused many times, and valid inputs must still exist among
  // the byte flips in data sections (otherwise the fuzz is not exercising the success path).
  for (const [kind, o] of Object.entries(outcome)) assert.ok(o.refused > 50, `${kind}: ${JSON.stringify(o)}`);
  assert.ok(outcome['byte flips']!.ok > 50, JSON.stringify(outcome));
  console.log(`# fuzz: ${cases.length} cases in ${ms.toFixed(0)} ms: ${JSON.stringify(outcome)}`);
});

test('fuzz: a sample through real files (open, read and readFloat32 every tensor)', async () => {
  const rng = new Rng('fuzz-files');
  const all = generateCases();
  const { dir, cleanup } = await tempDir();
  try {
    // Half the sample from inputs that parse (so tensors really get read), half from any.
    const parses = all.filter((c) => {
      try {
        parseHeader(c.bytes, c.bytes.length, 'x');
        return true;
      } catch {
        return false;
      }
    });
    const sample = [...Array.from({ length: 150 }, () => parses[rng.int(parses.length)]!), ...Array.from({ length: 150 }, () => all[rng.int(all.length)]!)];
    let opened = 0;
    for (let i = 0; i < sample.length; i++) {
      const c = sample[i]!;
      const p = path.join(dir, `case-${i}.safetensors`);
      await fsp.writeFile(p, c.bytes);
      let f: SafetensorsFile | undefined;
      try {
        f = await SafetensorsFile.open(p);
        opened++;
        for (const name of f.names) {
          await f.read(name);
          await f.readFloat32(name);
        }
      } catch (e) {
        if (!(e instanceof SafetensorsError)) assert.fail(`${c.kind}: ${(e as Error)?.stack ?? e}\ninput: ${hex(c.bytes)}`);
        assert.ok(e.problem.length > 0);
      } finally {
        await f?.close();
        await fsp.rm(p);
      }
    }
    assert.ok(opened >= 150, `only ${opened} sample files opened`);
  } finally {
    await cleanup();
  }
});
