// Matmul throughput of the native backend against the pure-JS cpu backend and PyTorch on CPU.
//   npm run build && node tools/bench/matmul.mjs [--quick] [--threads N] [--no-torch] [--no-js]
// PyTorch is Debian's python3-torch, run as /usr/bin/python3 (PYTHON overrides); install
// libopenblas0-pthread too so it is at its best. Not a test: numbers depend on the machine and its load.
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const threads = Number(option('--threads', process.env.UNIME_NUM_THREADS ?? String(os.availableParallelism?.() ?? os.cpus().length)));
process.env.UNIME_NUM_THREADS = String(threads);
const quick = flag('--quick');

const { tf } = await import(path.join(root, 'dist', 'src', 'runtime', 'tf.js'));
const { useDevice, nativeInfo, nativeSummary, loadNativeAddon } = await import(path.join(root, 'dist', 'src', 'runtime', 'devices.js'));
const nativeOps = await import(path.join(root, 'dist', 'src', 'runtime', 'native', 'ops.js'));

/** [label, batch, m, n, k, transposeA, transposeB] */
const SHAPES = [
  ['square 512', [], 512, 512, 512, false, false],
  ['square 1024', [], 1024, 1024, 1024, false, false],
  ['MLP up: [8*256, 512] x [512, 2048]', [], 2048, 2048, 512, false, false],
  ['MLP down, weight grad: [8*256, 2048]^T x [8*256, 512]', [], 2048, 512, 2048, true, false],
  ['attention QK^T: [8, 8, 256, 64] x [8, 8, 256, 64]^T', [8, 8], 256, 256, 64, false, true],
  ['attention PV: [8, 8, 256, 256] x [8, 8, 256, 64]', [8, 8], 256, 64, 256, false, false],
];

/** Other kernels on training-sized tensors: [label, tfjs op, PyTorch expression, input shapes]. */
const OPS = [
  ['softmax [8*8*256, 256] (attention)', (x) => tf.softmax(x), 'torch.softmax(x, -1)', [[8 * 8 * 256, 256]]],
  ['add, bias broadcast [2048, 2048] + [2048]', (x, y) => tf.add(x, y), 'x + y', [[2048, 2048], [2048]]],
  ['mul [2048, 2048]', (x, y) => tf.mul(x, y), 'x * y', [[2048, 2048], [2048, 2048]]],
  ['exp [2048, 2048]', (x) => tf.exp(x), 'torch.exp(x)', [[2048, 2048]]],
  ['transpose [8, 256, 8, 64] -> [0, 2, 1, 3]', (x) => tf.transpose(x, [0, 2, 1, 3]), 'x.permute(0, 2, 1, 3).contiguous()', [[8, 256, 8, 64]]],
  ['rmsNorm [2048, 512]', (x, w) => nativeOps.rmsNorm(x, w, 1e-6), 'x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * y', [[2048, 512], [512]]],
  ['silu [2048, 2048]', (x) => nativeOps.silu(x), 'torch.nn.functional.silu(x)', [[2048, 2048]]],
  [
    'causal attention fwd, q=k=v [8, 8, 256, 64]',
    (x) => nativeOps.attention(x, x, x, { causal: true }),
    'torch.softmax((x @ x.transpose(-1, -2) * 0.125).masked_fill(torch.ones(256, 256, dtype=torch.bool).triu(1), float("-inf")), -1) @ x',
    [[8, 8, 256, 64]],
  ],
  [
    'causal attention fwd+bwd, q=k=v [8, 8, 256, 64]',
    (x) => tf.grad((t) => tf.sum(nativeOps.attention(t, t, t, { causal: true })))(x),
    'torch.autograd.grad((torch.softmax((z @ z.transpose(-1, -2) * 0.125).masked_fill(torch.ones(256, 256, dtype=torch.bool).triu(1), float("-inf")), -1) @ z).sum(), z)[0] if (z := x.requires_grad_()) is not None else None',
    [[8, 8, 256, 64]],
  ],
];

const flopsOf = ([, batch, m, n, k]) => 2 * batch.reduce((a, b) => a * b, 1) * m * n * k;

/** Median seconds per call, after a warm-up, running for about `budget` seconds (at least `minReps`). */
function timeIt(fn, budget, minReps = 3) {
  fn();
  const times = [];
  const start = performance.now();
  while (times.length < minReps || (performance.now() - start) / 1000 < budget) {
    const t0 = performance.now();
    fn();
    times.push((performance.now() - t0) / 1000);
    if (times.length >= 200) break;
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

function tfMatMul(shape) {
  const [, batch, m, n, k, ta, tb] = shape;
  const a = tf.randomNormal([...batch, ...(ta ? [k, m] : [m, k])]);
  const b = tf.randomNormal([...batch, ...(tb ? [n, k] : [k, n])]);
  return {
    run: () => tf.matMul(a, b, ta, tb).dispose(),
    dispose: () => tf.dispose([a, b]),
  };
}

async function benchBackend(device, shape, budget, minReps) {
  await useDevice(device);
  const { run, dispose } = tfMatMul(shape);
  const s = timeIt(run, budget, minReps);
  dispose();
  return flopsOf(shape) / s / 1e9;
}

/** One of the addon's two GEMMs directly: the builtin one (what runs where OpenBLAS is not installed) or BLAS. */
function benchAddon(shape, budget, builtin) {
  const { addon } = loadNativeAddon();
  const [, batch, m, n, k, ta, tb] = shape;
  const nb = batch.reduce((x, y) => x * y, 1);
  const a = new Float32Array(nb * m * k).map(() => Math.random() - 0.5);
  const b = new Float32Array(nb * k * n).map(() => Math.random() - 0.5);
  const c = new Float32Array(nb * m * n);
  const s = timeIt(() => addon.batchMatMul(a, b, c, nb, m, n, k, ta, tb, null, null, builtin), budget);
  return flopsOf(shape) / s / 1e9;
}

const TORCH_SCRIPT = `
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
budget = float(sys.argv[2])
shapes = json.loads(sys.stdin.read())
out = []
with torch.no_grad():
    for label, batch, m, n, k, ta, tb in shapes:
        a = torch.randn(*batch, *( [k, m] if ta else [m, k] ))
        b = torch.randn(*batch, *( [n, k] if tb else [k, n] ))
        f = lambda: torch.matmul(a.transpose(-1, -2) if ta else a, b.transpose(-1, -2) if tb else b)
        f()
        times = []
        start = time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < budget:
            t0 = time.perf_counter(); f(); times.append(time.perf_counter() - t0)
            if len(times) >= 200: break
        times.sort()
        flops = 2 * m * n * k
        for d in batch: flops *= d
        out.append(flops / times[len(times) // 2] / 1e9)
ops = json.loads(sys.argv[3])
op_ms = []
if True:
    for label, expr, shapes in ops:
        ins = [torch.randn(*sh) for sh in shapes]
        x = ins[0]; y = ins[1] if len(ins) > 1 else None
        f = lambda: eval(expr)
        f()
        times = []
        start = time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < budget:
            t0 = time.perf_counter(); f(); times.append(time.perf_counter() - t0)
            if len(times) >= 200: break
        times.sort()
        op_ms.append(times[len(times) // 2] * 1000)
print(json.dumps({"gflops": out, "op_ms": op_ms, "version": torch.__version__, "threads": torch.get_num_threads()}))
`;

function benchTorch(budget) {
  const python = process.env.PYTHON ?? '/usr/bin/python3';
  const ops = JSON.stringify(OPS.map(([label, , expr, shapes]) => [label, expr, shapes]));
  const r = spawnSync(python, ['-c', TORCH_SCRIPT, String(threads), String(budget), ops], {
    input: JSON.stringify(SHAPES),
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: String(threads) },
  });
  if (r.status !== 0) return { error: (r.stderr || String(r.error)).trim().split('\n').pop() };
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const info = nativeInfo();
if (!info) {
  console.log('native addon not available: build it with `node tools/build-native.mjs` (see README, Native kernels)');
  process.exit(1);
}
const budget = quick ? 0.5 : 2;
console.log(`unime matmul benchmark: ${threads} threads; ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}\n${nativeSummary()}`);
const torch = flag('--no-torch') ? { error: 'skipped (--no-torch)' } : benchTorch(budget);
if (torch.error) console.log(`PyTorch: not measured (${torch.error})`);
else console.log(`PyTorch ${torch.version} on CPU, ${torch.threads} threads`);

const rows = [];
for (const [i, shape] of SHAPES.entries()) {
  const native = await benchBackend('native', shape, budget, 3);
  const builtin = info.blas ? benchAddon(shape, budget, true) : native;
  const blas = info.blas ? benchAddon(shape, budget, false) : NaN;
  // The JS kernels run at ~1 GFLOP/s: one timed call after a warm-up is plenty, and skip the biggest in --quick.
  const js = flag('--no-js') || (quick && flopsOf(shape) > 1.5e9) ? NaN : await benchBackend('cpu', shape, 0, 1);
  const pt = torch.gflops?.[i] ?? NaN;
  rows.push({ shape: shape[0], native, blas, builtin, js, pt });
}

const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const r = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '-');
const header = ['shape', 'native', 'openblas', 'builtin', 'js cpu', 'pytorch', 'native/pytorch', 'native/js'];
const table = rows.map((x) => [x.shape, f(x.native), f(x.blas), f(x.builtin), f(x.js), f(x.pt), r(x.native / x.pt), r(x.native / x.js)]);
const widths = header.map((h, c) => Math.max(h.length, ...table.map((row) => row[c].length)));
const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
console.log('\nGFLOP/s (median of timed calls; "native" is what the toolkit runs, the faster of "openblas" and the addon\'s own "builtin" SGEMM as timed at install)');
console.log(line(header));
for (const row of table) console.log(line(row));

async function benchOp(device, [, op, , shapes], budget, minReps) {
  await useDevice(device);
  const ins = shapes.map((sh) => tf.randomNormal(sh));
  const s = timeIt(() => op(...ins).dispose(), budget, minReps);
  tf.dispose(ins);
  return s * 1000;
}

const opRows = [];
for (const [i, spec] of OPS.entries()) {
  const native = await benchOp('native', spec, budget, 3);
  const js = flag('--no-js') ? NaN : await benchOp('cpu', spec, quick ? 0 : 0.5, 1);
  opRows.push([spec[0], f(native), f(js), f(torch.op_ms?.[i] ?? NaN), r((torch.op_ms?.[i] ?? NaN) / native), r(js / native)]);
}
const opHeader = ['kernel', 'native', 'js cpu', 'pytorch', 'native speed vs pytorch', 'vs js'];
const opWidths = opHeader.map((h, c) => Math.max(h.length, ...opRows.map((row) => row[c].length)));
const opLine = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(opWidths[i]) : c.padStart(opWidths[i]))).join('  ');
console.log('\nOther kernels, ms per call (median; includes allocating the output)');
console.log(opLine(opHeader));
for (const row of opRows) console.log(opLine(row));
