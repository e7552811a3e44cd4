/** LLaVA's multi_modal_projector: linear_2(act(linear_1(image features))). */
import { tf, type Tensor } from '../../runtime/tf.js';
import type { ActivationName } from '../../runtime/native/addon.js';
import { activation } from '../../runtime/native/ops.js';
import { Linear, type WeightGetter } from '../text/modules.js';

export class MultiModalProjector {
  readonly linear1: Linear;
  readonly linear2: Linear;

  constructor(
    get: WeightGetter,
    prefix: string,
    readonly act: ActivationName,
    bias: boolean,
  ) {
    this.linear1 = Linear.from(get, `${prefix}linear_1`, bias);
    this.linear2 = Linear.from(get, `${prefix}linear_2`, bias);
  }

  forward(x: Tensor): Tensor {
    return tf.tidy(() => this.linear2.forward(activation(this.act, this.linear1.forward(x))));
  }
}

/** Tensor shapes (relative to the projector prefix) for input width `visionDim` and text width `textDim`. */
export function expectedProjectorWeights(visionDim: number, textDim: number, bias: boolean): Map<string, number[]> {
  const m = new Map<string, number[]>([['linear_1.weight', [textDim, visionDim]]]);
  if (bias) m.set('linear_1.bias', [textDim]);
  m.set('linear_2.weight', [textDim, textDim]);
  if (bias) m.set('linear_2.bias', [textDim]);
  return m;
}
