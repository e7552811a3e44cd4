/**
 * SigLIP's pairwise sigmoid loss: every (image i, text j) pair is an independent binary problem,
 *   logits_ij = exp(logTemperature) * norm(image_i) . norm(text_j) + bias, z_ij = +1 if i = j else -1,
 *   L = -(1 / B) sum_ij log sigmoid(z_ij * logits_ij).
 * Temperature (as its log) and bias are learnable; SigLIP initialises them to log 10 and -10.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { UnimeError } from '../errors.js';
import { expectMatrix, l2Normalize } from './common.js';

export interface SigmoidPairLossOptions {
  /** L2-normalise both sides first; default true. */
  normalize?: boolean;
}

/** Fresh learnable SigLIP parameters: logTemperature = log 10, bias = -10. */
export function initSigmoidPairParameters(prefix = 'siglip'): { logTemperature: tf.Variable; bias: tf.Variable } {
  return {
    logTemperature: tf.variable(tf.scalar(Math.log(10)), true, `${prefix}.logit_scale`),
    bias: tf.variable(tf.scalar(-10), true, `${prefix}.logit_bias`),
  };
}

/**
 * log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), stable for either sign. tfjs's own tf.logSigmoid
 * reads a disposed tensor in its gradient when called under a tidy, so it is not used.
 */
function logSigmoid(x: Tensor): Tensor {
  return tf.sub(tf.minimum(x, 0), tf.log1p(tf.exp(tf.neg(tf.abs(x)))));
}

export function sigmoidPairLoss(image: Tensor, text: Tensor, logTemperature: Tensor, bias: Tensor, options: SigmoidPairLossOptions = {}): Tensor {
  const name = 'sigmoidPairLoss';
  const [b, d] = expectMatrix(image, 'image', name);
  const [bt, dt] = expectMatrix(text, 'text', name);
  if (bt !== b || dt !== d) throw new UnimeError(`${name}: text must be [${b}, ${d}] like image, got [${bt}, ${dt}]`);
  if (logTemperature.size !== 1 || bias.size !== 1) throw new UnimeError(`${name}: logTemperature and bias must be scalars`);
  const normalize = options.normalize ?? true;
  return tf.tidy(() => {
    const img = normalize ? l2Normalize(image) : image;
    const txt = normalize ? l2Normalize(text) : text;
    const logits = tf.add(tf.mul(tf.matMul(img, txt, false, true), tf.exp(tf.reshape(logTemperature, []))), tf.reshape(bias, []));
    const signs = tf.sub(tf.mul(tf.eye(b), 2), 1);
    return tf.div(tf.neg(tf.sum(logSigmoid(tf.mul(signs, logits)))), b);
  });
}
