/**
 * How much memory loading a checkpoint takes, against its size on disk. The loaders read one tensor at
 * a time (a positioned read into a fresh buffer, converted to float32 only when stored narrower) and
 * hand that buffer to the tfjs variable without a copy, so a float32 checkpoint should need about its
 * own size once, plus one tensor in flight; a bf16/f16 one twice its size (the weights are float32 in
 * memory), plus one tensor. `unime inspect <dir> --load` prints this report.
 *
 * Peak memory is the process's resident set: sampled (process.memoryUsage) while the load runs, and
 * the kernel's high-water mark (process.resourceUsage().maxRSS), which catches peaks between samples
 * but is only meaningful when the process has not been larger before (run it in a fresh process).
 */
import { promises as fsp, existsSync } from 'node:fs';
import * as path from 'node:path';
import { openCheckpoint } from '../io/checkpoint.js';
import { tf } from '../runtime/tf.js';
import { loadMultimodalModel } from './mllm/load.js';
import { checkpointConfigFile, readWeightVariables } from './weights.js';

export type LoadMemoryMode = 'model' | 'tensors';

export interface LoadMemoryOptions {
  /**
   * 'model': load what `unime embed` and training load (any supported checkpoint, with its tokenizer);
   * 'tensors': every tensor of the checkpoint into a float32 variable (any safetensors checkpoint).
   * Default: 'model' when config.json is beside the weights, else 'tensors'.
   */
  mode?: LoadMemoryMode;
  /** How often the resident set is sampled during the load (default 2 ms). */
  sampleMs?: number;
}

export interface LoadMemoryReport {
  checkpoint: string;
  mode: LoadMemoryMode;
  /** What was loaded ("phi3_v model", "42 tensors"). */
  loaded: string;
  files: string[];
  /** Bytes of the weight files on disk (headers included). */
  diskBytes: number;
  /** Bytes of the weights once loaded: what tfjs holds after the load (float32). */
  weightBytes: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  /** Highest resident set seen by sampling, minus the resident set before the load. */
  sampledPeakGrowthBytes: number;
  /** The kernel's high-water mark minus the resident set before; null when the load did not raise the mark (the process was larger before). */
  maxRssGrowthBytes: number | null;
  /** The larger of the two: the peak growth reported. */
  peakGrowthBytes: number;
  /** Highest growth of ArrayBuffer memory (where tensor data lives) seen by sampling. */
  peakArrayBufferGrowthBytes: number;
  seconds: number;
}

/** Load a checkpoint (then dispose it) and report its memory against its size on disk. */
export async function measureLoadMemory(target: string, options: LoadMemoryOptions = {}): Promise<LoadMemoryReport> {
  const ckpt = await openCheckpoint(target);
  const files = ckpt.files;
  const names = ckpt.names;
  await ckpt.close();
  let diskBytes = 0;
  for (const f of files) diskBytes += (await fsp.stat(f)).size;
  const mode = options.mode ?? (existsSync(await checkpointConfigFile(target)) ? 'model' : 'tensors');

  // Start the backend before measuring (and keep the cpu backend's "use tfjs-node" banner quiet, as src/runtime/devices.ts does).
  const backend = tf.backend() as unknown as { firstUse?: boolean };
  if (backend.firstUse) backend.firstUse = false;
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const tfBefore = tf.memory().numBytes;
  const before = process.memoryUsage();
  const maxRssBefore = process.resourceUsage().maxRSS * 1024;
  let peakRss = before.rss;
  let peakArrayBuffers = before.arrayBuffers;
  const sample = () => {
    const m = process.memoryUsage();
    if (m.rss > peakRss) peakRss = m.rss;
    if (m.arrayBuffers > peakArrayBuffers) peakArrayBuffers = m.arrayBuffers;
  };
  const timer = setInterval(sample, options.sampleMs ?? 2);
  const t0 = performance.now();
  let loaded: string;
  let dispose: () => void;
  try {
    if (mode === 'model') {
      const model = await loadMultimodalModel(target);
      loaded = `${model.modelType} model`;
      dispose = () => model.dispose();
    } else {
      const c = await openCheckpoint(target);
      try {
        const shapes = new Map(names.map((n) => [n, [...c.info(n).shape]]));
        const weights = await readWeightVariables(c, '', shapes, false);
        loaded = `${weights.size} tensors`;
        dispose = () => weights.forEach((v) => v.dispose());
      } finally {
        await c.close();
      }
    }
  } finally {
    clearInterval(timer);
  }
  sample();
  const seconds = (performance.now() - t0) / 1000;
  const weightBytes = tf.memory().numBytes - tfBefore;
  const rssAfter = process.memoryUsage().rss;
  const maxRssAfter = process.resourceUsage().maxRSS * 1024;
  dispose();
  const sampledPeakGrowthBytes = peakRss - before.rss;
  const maxRssGrowthBytes = maxRssAfter > maxRssBefore ? maxRssAfter - before.rss : null;
  return {
    checkpoint: target,
    mode,
    loaded,
    files: files.map((f) => path.resolve(f)),
    diskBytes,
    weightBytes,
    rssBeforeBytes: before.rss,
    rssAfterBytes: rssAfter,
    sampledPeakGrowthBytes,
    maxRssGrowthBytes,
    peakGrowthBytes: Math.max(sampledPeakGrowthBytes, maxRssGrowthBytes ?? 0),
    peakArrayBufferGrowthBytes: peakArrayBuffers - before.arrayBuffers,
    seconds,
  };
}
