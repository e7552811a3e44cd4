/** The expected.json sidecar of test/fixtures/safetensors, and tensors rebuilt from it. */
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { fixture } from '../helpers.js';
import type { Dtype, TensorArray } from '../../src/io/dtypes.js';
import type { TensorInput } from '../../src/io/safetensors.js';

export interface ExpectedTensor {
  dtype: Dtype;
  shape: number[];
  hex: string;
  values: (number | string | boolean)[];
  bits?: number[];
}

export interface Sidecar {
  writer: string;
  files: Record<string, { metadata: Record<string, string> | null; tensors: Record<string, ExpectedTensor> }>;
  sharded: { dir: string; max_shard_bytes: number; metadata: Record<string, string>; order: string[]; tensors: Record<string, ExpectedTensor> };
}

export const sidecar: Sidecar = JSON.parse(readFileSync(fixture('safetensors', 'expected.json'), 'utf8'));

export function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

export function inputOf(t: ExpectedTensor): TensorInput {
  return { dtype: t.dtype, shape: t.shape, data: fromHex(t.hex) };
}

export function expectedNumber(v: number | string | boolean): number {
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  if (typeof v === 'boolean') return v ? 1 : 0;
  return Number(v);
}

/** Compare a typed array read in the stored dtype with the sidecar's values. */
export function assertMatchesStored(name: string, got: TensorArray, t: ExpectedTensor): void {
  assert.equal(got.length, t.values.length, `${name}: length`);
  if (t.bits) {
    assert.deepEqual([...(got as Uint16Array)], t.bits, `${name}: bits`);
    return;
  }
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!;
    const w = t.values[i]!;
    if (typeof g === 'bigint') assert.equal(g, BigInt(w as string), `${name}[${i}]`);
    else if (t.dtype === 'BOOL') assert.equal(g, w ? 1 : 0, `${name}[${i}]`);
    else assertSameNumber(g, expectedNumber(w), `${name}[${i}]`);
  }
}

/** Compare a float32 read with the sidecar's values rounded to float32. */
export function assertMatchesFloat32(name: string, got: Float32Array, t: ExpectedTensor): void {
  assert.equal(got.length, t.values.length, `${name}: length`);
  for (let i = 0; i < got.length; i++) assertSameNumber(got[i]!, Math.fround(expectedNumber(t.values[i]!)), `${name}[${i}]`);
}

export function assertSameNumber(got: number, want: number, label: string): void {
  if (Number.isNaN(want)) assert.ok(Number.isNaN(got), `${label}: ${got} is not NaN`);
  else assert.ok(Object.is(got, want), `${label}: ${got} != ${want}`);
}
