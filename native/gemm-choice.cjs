// Which SGEMM the native addon runs when it is linked against OpenBLAS: OpenBLAS or the addon's own
// (builtin) kernel. Shared by the install-time build (tools/build-native.mjs), which times both on this
// machine and records the faster, and the addon loader (src/runtime/devices.ts), which applies that record.
//
// Neither is faster everywhere. On a 2-core Zen 5 VM the builtin AVX-512 kernel ran a 1024 matmul at
// 290 GFLOP/s and Debian's OpenBLAS 0.3.21 at 115-140 (its kernels predate the CPU); on an Emerald
// Rapids Xeon OpenBLAS's SkylakeX kernels led. So the choice is measured, not assumed.
//
// The addon reads UNIME_GEMM once, when it loads: "builtin" runs the builtin kernel, anything else BLAS.
// A UNIME_GEMM the user set always wins over the record. A record holds for the conditions it was timed
// under (the OpenBLAS kernel family asked for, the CPU): under others it is not applied, and the loader
// says why (a later OPENBLAS_CORETYPE, or a build folder carried to another machine).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** The record's file name, next to the addon (native/build/Release/). */
const CHOICE_FILE = 'gemm-choice.json';

/**
 * Shapes timed, [m, n, k]: the tiny models' projections and MLP (rows = batch x sequence) and a square
 * one for bigger checkpoints. Small enough that the whole calibration takes about a second.
 */
const SHAPES = [
  [2048, 344, 128],
  [2048, 128, 344],
  [128, 344, 2048],
  [512, 512, 512],
  [1024, 1024, 1024],
];

/** BLAS stays unless the builtin kernel is at least this much faster (it is the kernel users expect). */
const MARGIN = 1.1;

function seconds(fn) {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/**
 * Times BLAS and the builtin kernel on SHAPES with a loaded addon (linked against BLAS), alternating the
 * two so that a busy machine slows both alike. Returns the record: { gemm: 'blas' | 'builtin', ... }.
 * `budget` is the seconds spent per shape and kernel (at least 3 calls each; the median counts).
 */
function calibrate(addon, { budget = 0.1, shapes = SHAPES, env = process.env } = {}) {
  const info = addon.info();
  const conditions = timingConditions(env);
  if (!info.blas) return { gemm: 'builtin', reason: 'the addon is not linked against BLAS', shapes: [], conditions };
  const rows = [];
  let blasTotal = 0;
  let builtinTotal = 0;
  for (const [m, n, k] of shapes) {
    const a = new Float32Array(m * k).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
    const b = new Float32Array(k * n).map((_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
    const out = new Float32Array(m * n);
    const call = (builtin) => addon.batchMatMul(a, b, out, 1, m, n, k, false, false, null, null, builtin);
    call(false);
    call(true);
    const times = { blas: [], builtin: [] };
    let spent = 0;
    while (times.blas.length < 3 || spent < 2 * budget) {
      const tb = seconds(() => call(false));
      const tn = seconds(() => call(true));
      times.blas.push(tb);
      times.builtin.push(tn);
      spent += tb + tn;
      if (times.blas.length >= 200) break;
    }
    const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const blas = median(times.blas);
    const builtin = median(times.builtin);
    blasTotal += blas;
    builtinTotal += builtin;
    const gflop = (2 * m * n * k) / 1e9;
    rows.push({ m, n, k, blas_gflops: significant(gflop / blas), builtin_gflops: significant(gflop / builtin) });
  }
  const gemm = blasTotal > MARGIN * builtinTotal ? 'builtin' : 'blas';
  return {
    gemm,
    blas: info.gemm,
    speedup: round(blasTotal / builtinTotal),
    reason:
      gemm === 'builtin'
        ? `the builtin SGEMM ran these shapes ${round(blasTotal / builtinTotal)}x as fast as BLAS`
        : `BLAS ran these shapes ${round(builtinTotal / blasTotal)}x as fast as the builtin SGEMM`,
    shapes: rows,
    conditions,
  };
}

/** What a timing holds for besides the addon itself: the OpenBLAS kernel family asked for, and the CPU. */
function timingConditions(env = process.env) {
  const cpus = os.cpus();
  return { openblas_coretype: env.OPENBLAS_CORETYPE ?? null, cpu: cpus.length > 0 ? cpus[0].model : null };
}

/** Why a record timed under `then` does not hold under `now`, or null when it does (or records no conditions). */
function staleBecause(then, now) {
  if (!then || typeof then !== 'object') return null;
  const name = (x) => (x === null || x === undefined ? 'unset' : x);
  if ((then.openblas_coretype ?? null) !== now.openblas_coretype) {
    return `timed with OPENBLAS_CORETYPE ${name(then.openblas_coretype)}, this process has ${name(now.openblas_coretype)}`;
  }
  if ((then.cpu ?? null) !== now.cpu) return `timed on ${name(then.cpu)}, this CPU is ${name(now.cpu)}`;
  return null;
}

function round(x) {
  return Math.round(x * 100) / 100;
}

function significant(x) {
  return Number(x.toPrecision(3));
}

/** The record in `dir` (the addon's folder), or null when there is none or it cannot be read. */
function readGemmChoice(dir) {
  try {
    const r = JSON.parse(fs.readFileSync(path.join(dir, CHOICE_FILE), 'utf8'));
    return r && (r.gemm === 'blas' || r.gemm === 'builtin') ? r : null;
  } catch {
    return null;
  }
}

/** Writes the record atomically (a temporary file renamed into place). */
function writeGemmChoice(dir, record) {
  const file = path.join(dir, CHOICE_FILE);
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(record, null, 2) + '\n');
  fs.renameSync(tmp, file);
  return file;
}

/**
 * Sets env.UNIME_GEMM from the record in `dir` unless the user set it or the record was timed under other
 * conditions. Returns the record it applied; a stale one with `stale` (why) and env left alone; or
 * undefined (the user's choice, or no record: the addon's default, BLAS when linked).
 */
function applyGemmChoice(dir, env = process.env, now = timingConditions(env)) {
  if (env.UNIME_GEMM !== undefined) return undefined;
  const r = readGemmChoice(dir);
  if (r === null) return undefined;
  const stale = staleBecause(r.conditions, now);
  if (stale !== null) return { ...r, stale };
  env.UNIME_GEMM = r.gemm;
  return r;
}

module.exports = { CHOICE_FILE, SHAPES, MARGIN, calibrate, timingConditions, staleBecause, readGemmChoice, writeGemmChoice, applyGemmChoice };
