/**
 * LIFT's positive-only alignment: L = mean_i (1 - cos(a_i, b_i)). No negatives and no temperature, so
 * the cost is linear in the batch size.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { UnimeError } from '../errors.js';
import { expectMatrix, l2Normalize } from './common.js';

export function positiveCosineLoss(a: Tensor, b: Tensor): Tensor {
  const name = 'positiveCosineLoss';
  const [n, d] = expectMatrix(a, 'a', name);
  const [nb, db] = expectMatrix(b, 'b', name);
  if (nb !== n || db !== d) throw new UnimeError(`${name}: b must be [${n}, ${d}] like a, got [${nb}, ${db}]`);
  return tf.tidy(() => tf.sub(1, tf.mean(tf.sum(tf.mul(l2Normalize(a), l2Normalize(b)), -1))));
}
