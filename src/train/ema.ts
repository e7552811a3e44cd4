/**
 * An exponential moving average of a set of variables: ProCLIP stage 2's teacher image encoder.
 *   shadow <- decay * shadow + (1 - decay) * param      after every optimizer step
 * The shadow starts as a copy of the parameters. `state()` / `load()` carry it through checkpoints,
 * so a resumed run continues the same average.
 */
import { UnimeError } from '../errors.js';
import { tf } from '../runtime/tf.js';

export class Ema {
  /** Shadow copies under the same keys as the parameters (not trainable). */
  readonly shadow = new Map<string, tf.Variable>();
  /** Updates applied so far. */
  updates = 0;

  /** `params` by key (e.g. a vision tower's weight map), so the shadow map can build a twin module. */
  constructor(
    readonly params: ReadonlyMap<string, tf.Variable>,
    readonly decay: number,
  ) {
    if (!(decay >= 0 && decay < 1)) throw new UnimeError(`EMA decay must be in [0, 1), got ${decay}`, { field: 'loss.ema_decay' });
    for (const [key, p] of params) this.shadow.set(key, tf.variable(p.clone(), false));
  }

  /** One averaging step after an optimizer update. */
  update(): void {
    const d = this.decay;
    tf.tidy(() => {
      for (const [key, p] of this.params) {
        const s = this.shadow.get(key)!;
        s.assign(tf.add(tf.mul(s, d), tf.mul(p, 1 - d)));
      }
    });
    this.updates++;
  }

  /** The shadows as named host arrays, for a checkpoint. */
  async state(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, v] of this.shadow) out.set(name, { shape: [...v.shape], data: (await v.data()) as Float32Array });
    return out;
  }

  /** Restore shadows saved by `state()`; every parameter must be present with its shape. */
  load(saved: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>, updates: number, file: string): void {
    for (const [name, v] of this.shadow) {
      const s = saved.get(name);
      if (s === undefined || s.data.length !== v.size) {
        throw new UnimeError(`the EMA state lacks ${name} or has the wrong size`, { file, fix: 'rerun the stage with --force to start over' });
      }
      tf.tidy(() => v.assign(tf.tensor(s.data, v.shape)));
    }
    this.updates = updates;
  }

  dispose(): void {
    for (const v of this.shadow.values()) v.dispose();
  }
}
