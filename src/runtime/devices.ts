/**
 * Device choice. Each device is a provider that can say whether it is usable here (and why not)
 * and can make itself the active tfjs backend. The pure-JS `cpu` backend is always there and is the
 * reference every faster kernel is tested against; `native` (C++ kernels on the cpu backend's
 * buffers) and `cuda` register themselves here when their addon is built.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tf } from './tf.js';
import { log } from './log.js';
import { UnimeError } from '../errors.js';
import { missingNativeExports, type NativeInfo, type NativeKernels } from './native/addon.js';
import { NATIVE_BACKEND, registerNativeBackend } from './native/backend.js';

export const DEVICE_NAMES = ['cpu', 'native', 'cuda'] as const;
export type DeviceName = (typeof DEVICE_NAMES)[number];
export type DeviceRequest = DeviceName | 'auto';
export const PRECISIONS = ['fp32', 'tf32', 'bf16'] as const;
export type Precision = (typeof PRECISIONS)[number];

export interface Availability {
  available: boolean;
  /** Why not, in one line a user can act on. */
  reason?: string;
}

export interface DeviceProvider {
  name: DeviceName;
  /** One line for `--help` and status output. */
  description: string;
  /** Compute precisions this device can run. */
  precisions: readonly Precision[];
  /** Higher wins under `--device auto`. */
  priority: number;
  probe(): Availability;
  /** Make this device's tfjs backend the active one. */
  activate(): Promise<void>;
}

const providers = new Map<DeviceName, DeviceProvider>();

export function registerDevice(p: DeviceProvider): void {
  providers.set(p.name, p);
}

export function listDevices(): { name: DeviceName; description: string; availability: Availability }[] {
  return DEVICE_NAMES.filter((n) => providers.has(n)).map((n) => {
    const p = providers.get(n)!;
    return { name: n, description: p.description, availability: safeProbe(p) };
  });
}

function safeProbe(p: DeviceProvider): Availability {
  try {
    return p.probe();
  } catch (e) {
    return { available: false, reason: `probe failed: ${(e as Error).message}` };
  }
}

export interface ActiveDevice {
  name: DeviceName;
  precision: Precision;
  backend: string;
}

let active: ActiveDevice | null = null;

export function activeDevice(): ActiveDevice | null {
  return active;
}

/**
 * Activate a device. An explicit request that cannot be met is an error naming why; `auto` takes
 * the best available device and says once, in one line, when it had to settle for the JS kernels.
 */
export async function useDevice(request: DeviceRequest = 'auto', precision: Precision = 'fp32'): Promise<ActiveDevice> {
  if (request !== 'auto' && !(DEVICE_NAMES as readonly string[]).includes(request)) {
    throw new UnimeError(`unknown device "${request}"`, { field: 'device', fix: `use one of: auto, ${DEVICE_NAMES.join(', ')}` });
  }
  if (!(PRECISIONS as readonly string[]).includes(precision)) {
    throw new UnimeError(`unknown precision "${precision}"`, { field: 'precision', fix: `use one of: ${PRECISIONS.join(', ')}` });
  }
  let chosen: DeviceProvider;
  if (request === 'auto') {
    const ranked = [...providers.values()].sort((a, b) => b.priority - a.priority);
    const usable = ranked.filter((p) => safeProbe(p).available && p.precisions.includes(precision));
    chosen = usable[0] ?? providers.get('cpu')!;
    if (chosen.name === 'cpu') {
      const native = providers.get('native');
      const why = native ? safeProbe(native).reason : 'no native provider registered';
      log.once('device:js-fallback', 'info', `unime: native kernels unavailable (${why}); running on the pure-JS kernels, which are slow`);
    }
  } else {
    const p = providers.get(request);
    const a = p ? safeProbe(p) : { available: false, reason: 'not registered in this build' };
    if (!p || !a.available) {
      throw new UnimeError(`device "${request}" is not available: ${a.reason}`, {
        field: 'device',
        fix: 'use --device auto (the best available) or --device cpu',
      });
    }
    chosen = p;
  }
  if (!chosen.precisions.includes(precision)) {
    throw new UnimeError(`precision ${precision} is not supported on device ${chosen.name}`, {
      field: 'precision',
      fix: `use precision=${chosen.precisions.join(' or ')} on ${chosen.name}${precision !== 'fp32' ? ', or a device that supports ' + precision + ' (cuda)' : ''}`,
    });
  }
  await chosen.activate();
  active = { name: chosen.name, precision, backend: tf.getBackend() };
  return active;
}

// --- the built-in providers ---

registerDevice({
  name: 'cpu',
  description: 'pure-JS tfjs cpu backend (the reference; slow)',
  precisions: ['fp32'],
  priority: 0,
  probe: () => ({ available: true }),
  async activate() {
    await tf.setBackend('cpu');
    await tf.ready();
    // The cpu backend prints a "use tfjs-node" banner on first use; we are not going to.
    (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  },
});

/** A path in the package root (dist/src/runtime is three levels below it). */
function inPackage(...parts: string[]): string {
  return path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', ...parts);
}

/** Where the native addon is looked for: UNIME_NATIVE_ADDON, else native/build/Release in the package. */
export function nativeAddonPath(): string {
  const fromEnv = process.env.UNIME_NATIVE_ADDON;
  if (fromEnv) return path.resolve(fromEnv);
  return inPackage('native', 'build', 'Release', 'unime_native.node');
}

/** What the native addon (native/) exports for the device layer. */
export interface NativeAddon {
  /** Whether the addon can run `device` on this machine, and why not (no GPU, no cuBLASLt ...). */
  probe?(device: DeviceName): Availability;
  /** Register the device's tfjs backend (named after the device) and its kernels. */
  register?(device: DeviceName, tfjs: typeof tf): void;
}

let addonCache: { addon: NativeAddon | null; reason?: string } | null = null;

/** native/openblas-core.cjs: the OPENBLAS_CORETYPE choice, shared with the install-time build check. */
export interface OpenblasCore {
  openblasCoreType(flags: ReadonlySet<string>): 'SkylakeX' | 'Haswell' | undefined;
  cpuFlags(cpuinfo?: string): Set<string>;
  chooseOpenblasCore(env?: NodeJS.ProcessEnv, flags?: ReadonlySet<string>, arch?: string): string | undefined;
}

export function openblasCore(): OpenblasCore {
  return createRequire(import.meta.url)(inPackage('native', 'openblas-core.cjs')) as OpenblasCore;
}

/** native/gemm-choice.cjs: OpenBLAS or the builtin SGEMM, as timed on this machine at install. */
export interface GemmRecord {
  gemm: 'blas' | 'builtin';
  reason: string;
  /** BLAS time over builtin time on the timed shapes (above 1: the builtin kernel is faster). */
  speedup?: number;
  shapes: { m: number; n: number; k: number; blas_gflops: number; builtin_gflops: number }[];
  /** What the timing holds for (absent in records from before they were kept). */
  conditions?: TimingConditions;
  /** Set by applyGemmChoice on a record timed under other conditions (not applied): why. */
  stale?: string;
}
export interface TimingConditions {
  openblas_coretype: string | null;
  cpu: string | null;
}
export interface GemmChoice {
  CHOICE_FILE: string;
  MARGIN: number;
  calibrate(addon: Pick<NativeKernels, 'info' | 'batchMatMul'>, options?: { budget?: number; shapes?: [number, number, number][]; env?: NodeJS.ProcessEnv }): GemmRecord;
  timingConditions(env?: NodeJS.ProcessEnv): TimingConditions;
  staleBecause(then: TimingConditions | undefined, now: TimingConditions): string | null;
  readGemmChoice(dir: string): GemmRecord | null;
  writeGemmChoice(dir: string, record: GemmRecord): string;
  applyGemmChoice(dir: string, env?: NodeJS.ProcessEnv, now?: TimingConditions): GemmRecord | undefined;
}

export function gemmChoice(): GemmChoice {
  return createRequire(import.meta.url)(inPackage('native', 'gemm-choice.cjs')) as GemmChoice;
}

/** Why the addon runs the SGEMM it does: the user's UNIME_GEMM or the install-time timing ('' for the default). */
let gemmWhy = '';

export function loadNativeAddon(): { addon: NativeAddon | null; reason?: string } {
  if (addonCache) return addonCache;
  const p = nativeAddonPath();
  if (!existsSync(p)) {
    addonCache = { addon: null, reason: `addon not built (${path.relative(process.cwd(), p) || p} missing)` };
  } else {
    openblasCore().chooseOpenblasCore();
    const userGemm = process.env.UNIME_GEMM;
    const timed = gemmChoice().applyGemmChoice(path.dirname(p));
    gemmWhy =
      userGemm !== undefined
        ? `from UNIME_GEMM=${userGemm}`
        : timed === undefined
          ? ''
          : timed.stale !== undefined
            ? `the default: the install-time timing is not applied (${timed.stale}); node tools/build-native.mjs times it again`
            : `timed at install: ${timed.reason}`;
    try {
      addonCache = { addon: createRequire(import.meta.url)(p) as NativeAddon };
    } catch (e) {
      addonCache = { addon: null, reason: `addon failed to load: ${(e as Error).message.split('\n')[0]}` };
    }
  }
  return addonCache;
}

/** The cuda provider: a GPU backend the addon registers itself through `register(device, tf)`. */
function addonProvider(name: 'cuda', description: string, precisions: readonly Precision[], priority: number): DeviceProvider {
  return {
    name,
    description,
    precisions,
    priority,
    probe() {
      const { addon, reason } = loadNativeAddon();
      if (!addon) return { available: false, reason: reason ?? 'addon not loaded' };
      if (typeof addon.probe !== 'function') return { available: false, reason: 'the addon does not export probe()' };
      const a = addon.probe(name);
      if (a.available && typeof addon.register !== 'function') return { available: false, reason: 'the addon does not export register()' };
      return a;
    },
    async activate() {
      const { addon } = loadNativeAddon();
      if (!addon?.register) throw new UnimeError(`the native addon does not provide device "${name}"`, { fix: 'rebuild the addon, or use --device cpu' });
      if (!tf.findBackend(name)) addon.register(name, tf);
      await tf.setBackend(name);
      await tf.ready();
    },
  };
}

/** The native provider: the addon's CPU kernels, registered as a tfjs backend by src/runtime/native/. */
function nativeProvider(): DeviceProvider {
  const kernels = (): { kernels: NativeKernels | null; reason?: string } => {
    const { addon, reason } = loadNativeAddon();
    if (!addon) return { kernels: null, reason: reason ?? 'addon not loaded' };
    const missing = missingNativeExports(addon);
    if (missing.length > 0) return { kernels: null, reason: `the addon lacks ${missing.join(', ')}; rebuild it (node tools/build-native.mjs)` };
    return { kernels: addon as unknown as NativeKernels };
  };
  return {
    name: 'native',
    description: 'C++ kernels (BLAS, threads) on the cpu backend layout',
    precisions: ['fp32'],
    priority: 10,
    probe() {
      const { kernels: k, reason } = kernels();
      if (!k) return { available: false, reason: reason ?? 'addon not loaded' };
      return k.probe('native');
    },
    async activate() {
      const { kernels: k, reason } = kernels();
      if (!k) throw new UnimeError(`device "native" is not available: ${reason}`, { fix: 'rebuild the addon (node tools/build-native.mjs), or use --device cpu' });
      registerNativeBackend(k);
      await tf.setBackend(NATIVE_BACKEND);
      await tf.ready();
    },
  };
}

/** What the addon reports about itself (GEMM in use, threads), or null when it is not loaded. */
export function nativeInfo(): NativeInfo | null {
  const { addon } = loadNativeAddon();
  if (!addon || missingNativeExports(addon).length > 0) return null;
  return (addon as unknown as NativeKernels).info();
}

/**
 * One line on the native CPU kernels for `unime devices`: the SGEMM in use and why (the user's UNIME_GEMM,
 * or the install-time timing of OpenBLAS against the builtin kernel), threads and SIMD. Null without the addon.
 */
export function nativeSummary(): string | null {
  const info = nativeInfo();
  if (!info) return null;
  return `native: gemm ${info.gemm}${gemmWhy ? `; ${gemmWhy}` : ''}; ${info.threads} threads, ${info.simd}; malloc ${info.malloc ?? 'default'}`;
}

registerDevice(nativeProvider());
registerDevice(addonProvider('cuda', 'CUDA kernels and cuBLASLt on an NVIDIA GPU', ['fp32', 'tf32', 'bf16'], 20));
