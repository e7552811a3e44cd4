/**
 * CLIP's symmetric InfoNCE (LLM2CLIP stage 2, LIFT's contrastive variant):
 *   logits = s * norm(image) . norm(text)^T, s = min(exp(logScale), maxScale),
 *   L = (CE(logits, diag) + CE(logits^T, diag)) / 2.
 * The scale is learnable as its log (initClipLogScale: log(1/0.07)); it is clamped at 100 inside the loss,
 * so a clamped scale gets no gradient (open_clip clamps the parameter after each step instead; same values).
 * With `negativeText` (NegCLIP, Yuksekgonul et al. 2023): M further captions, each false for its image
 * (an attribute swapped, say), are extra columns of the image -> text softmax only; the text -> image
 * direction stays over the batch's images.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { UnimeError } from '../errors.js';
import { expectMatrix, l2Normalize, meanCrossEntropy } from './common.js';

export interface ClipInfoNceOptions {
  /** Upper bound of the logit scale (not its log); default 100. */
  maxScale?: number;
  /** L2-normalise both sides first; default true. */
  normalize?: boolean;
  /** [M, dim] hard-negative captions, extra columns for image -> text (NegCLIP); default none. */
  negativeText?: Tensor | null;
}

/** A fresh learnable log logit scale, log(1 / 0.07). */
export function initClipLogScale(name = 'logit_scale'): tf.Variable {
  return tf.variable(tf.scalar(Math.log(1 / 0.07)), true, name);
}

export function clipInfoNce(image: Tensor, text: Tensor, logScale: Tensor, options: ClipInfoNceOptions = {}): Tensor {
  const name = 'clipInfoNce';
  const [b, d] = expectMatrix(image, 'image', name);
  const [bt, dt] = expectMatrix(text, 'text', name);
  if (bt !== b || dt !== d) throw new UnimeError(`${name}: text must be [${b}, ${d}] like image, got [${bt}, ${dt}]`);
  if (logScale.size !== 1) throw new UnimeError(`${name}: logScale must be a scalar, got shape [${logScale.shape.join(', ')}]`);
  const maxScale = options.maxScale ?? 100;
  const normalize = options.normalize ?? true;
  const negative = options.negativeText ?? null;
  if (negative) {
    const [, dn] = expectMatrix(negative, 'negativeText', name);
    if (dn !== d) throw new UnimeError(`${name}: negativeText must have dim ${d} like image, got ${dn}`);
  }
  return tf.tidy(() => {
    const scale = tf.minimum(tf.exp(tf.reshape(logScale, [])), maxScale);
    const prep = (t: Tensor) => (normalize ? l2Normalize(t) : t);
    const img = prep(image);
    const logits = tf.mul(tf.matMul(img, prep(text), false, true), scale);
    const labels = Int32Array.from({ length: b }, (_, i) => i);
    const i2tLogits = negative ? tf.concat([logits, tf.mul(tf.matMul(img, prep(negative), false, true), scale)], 1) : logits;
    return tf.div(tf.add(meanCrossEntropy(i2tLogits, labels), meanCrossEntropy(tf.transpose(logits), labels)), 2);
  });
}
