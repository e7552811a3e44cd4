/**
 * Layer-wise learning-rate decay for a vision transformer (BEiT / EVA fine-tuning): with L encoder
 * layers, the embeddings (patch, class and position embeddings, CLIP's pre_layrnorm) are depth 0,
 * `encoder.layers.i` is depth i + 1, and everything above (post_layernorm, pooling head, projections,
 * adapters) is depth L + 1; a parameter at depth l trains at lr * decay^(L + 1 - l).
 */
import { UnimeError } from '../errors.js';

/** The depth of a vision-tower key (relative to the tower prefix), 0 .. numLayers + 1. */
export function visionDepth(key: string, numLayers: number): number {
  if (key.startsWith('embeddings.') || key.startsWith('pre_layrnorm.')) return 0;
  const m = /^encoder\.layers\.(\d+)\./.exec(key);
  if (m) return Number(m[1]) + 1;
  return numLayers + 1;
}

/**
 * lr multiplier by variable name: names under `towerPrefix` follow the decay by depth, every other name
 * (heads, adapters, the logit scale) gets 1.
 */
export function layerwiseLrScale(towerPrefix: string, numLayers: number, decay: number): (name: string) => number {
  if (!(decay > 0 && decay <= 1)) throw new UnimeError(`layer_decay must be in (0, 1], got ${decay}`, { field: 'vision.layer_decay' });
  return (name) => {
    if (!name.startsWith(towerPrefix)) return 1;
    return decay ** (numLayers + 1 - visionDepth(name.slice(towerPrefix.length), numLayers));
  };
}
