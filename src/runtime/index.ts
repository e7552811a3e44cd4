/**
 * Runtime setup in one call: pick the device, fix the precision policy, seed the run's RNG.
 */
import { useDevice, type ActiveDevice, type DeviceRequest, type Precision } from './devices.js';
import { Rng } from './rng.js';

export interface RuntimeOptions {
  device?: DeviceRequest;
  precision?: Precision;
  seed?: number | string;
}

export interface Runtime {
  device: ActiveDevice;
  /** The run's root random stream; fork it per purpose (`rng.fork('init')`, `rng.fork('data')`). */
  rng: Rng;
  seed: number | string;
}

export async function initRuntime(opts: RuntimeOptions = {}): Promise<Runtime> {
  const device = await useDevice(opts.device ?? 'auto', opts.precision ?? 'fp32');
  const seed = opts.seed ?? 0;
  return { device, rng: new Rng(seed), seed };
}

export { tf } from './tf.js';
export type { Tensor } from './tf.js';
export { Rng, type RngState } from './rng.js';
export * from './devices.js';
export * from './memory.js';
export * from './random.js';
export { log, setLogLevel, type LogLevel } from './log.js';
