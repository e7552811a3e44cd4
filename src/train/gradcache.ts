/**
 * GradCache (Gao et al. 2021; VLM2Vec and UniME train with it): a contrastive loss over a batch larger
 * than the activations memory allows, with exactly the full-batch gradients.
 *   1. Embed every chunk without a gradient tape (tfjs records nothing outside a gradient call) and free
 *      its activations at once: only the [B, d] embeddings stay.
 *   2. Evaluate the loss on the whole batch and take its gradient w.r.t. the two embedding matrices.
 *   3. Re-embed each chunk under a tape and backpropagate the cached embedding gradient into the
 *      parameters: d/dparams sum(emb_chunk * cachedGrad_chunk) is the vector-Jacobian product, and the
 *      chunks' contributions add up to the full-batch gradient.
 * Encoders must be deterministic across the two passes (dropout off, or seeded from the chunk index they
 * are given), or the re-forward backpropagates through a different function than the one the loss saw.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { UnimeError } from '../errors.js';

/**
 * An encoder embeds a chunk of inputs: [chunk.length, dim]. It is called twice per chunk (cache pass,
 * then backprop pass) with the same chunk index, from which a stochastic encoder can derive its dropout
 * seed so that both passes draw the same masks.
 */
export type ChunkEncoder<X> = (chunk: X[], chunkIndex: number) => Tensor;

export interface GradCacheEncoders<Q, T> {
  query: ChunkEncoder<Q>;
  target: ChunkEncoder<T>;
}

export interface GradCacheStepOptions<Q, T> {
  /** The parameters to differentiate; gradients are keyed by their names (which must be unique). */
  params: tf.Variable[];
  encoders: GradCacheEncoders<Q, T>;
  batch: { query: Q[]; target: T[] };
  /** Rows per forward/backward chunk (queries and targets alike); the last chunk may be shorter. */
  chunkSize: number;
  /**
   * The loss over the whole batch's embeddings (queries [Bq, d], targets [Bt, d']): a scalar. Called
   * exactly once per step, so statistics it captures (hardNegativeInfoNce's) are the step's.
   */
  loss: (queries: Tensor, targets: Tensor) => Tensor;
  /**
   * Parameters (among `params`) that the loss itself uses, such as CLIP's learnable logit scale: their
   * gradient is taken directly on the cached embeddings.
   */
  lossParams?: tf.Variable[];
}

export interface GradCacheStepResult {
  loss: number;
  /** Gradient of the loss per parameter name; a parameter the encoders never touch gets zeros. */
  grads: Map<string, Tensor>;
}

function chunks<X>(xs: X[], size: number): X[][] {
  const out: X[][] = [];
  for (let i = 0; i < xs.length; i += size) out.push(xs.slice(i, i + size));
  return out;
}

function embedAll<X>(encode: ChunkEncoder<X>, parts: X[][], side: string): Tensor {
  return tf.tidy(() => {
    const embs = parts.map((part, index) => {
      const e = encode(part, index);
      if (e.rank !== 2 || e.shape[0] !== part.length) {
        throw new UnimeError(`gradCacheStep: the ${side} encoder returned shape [${e.shape.join(', ')}] for ${part.length} inputs; it must return [${part.length}, dim]`);
      }
      return e;
    });
    return embs.length === 1 ? embs[0]! : tf.concat(embs, 0);
  });
}

/**
 * The loss summed to a scalar. Thrown from inside a gradient computation, an error leaves a tensor
 * behind in tfjs; so a non-scalar loss is noted there and `check` reports it once the computation is over.
 */
function scalarLoss(loss: (q: Tensor, t: Tensor) => Tensor) {
  let badShape: number[] | null = null;
  return {
    sum: (q: Tensor, t: Tensor): tf.Scalar => {
      const l = loss(q, t);
      if (l.size !== 1) badShape = l.shape;
      return tf.sum(l) as tf.Scalar;
    },
    check: (): void => {
      if (badShape) throw new UnimeError(`gradCacheStep: the loss must be a scalar, got shape [${badShape.join(', ')}]`);
    },
  };
}

/** Adds each named gradient into the running sums (kept outside the caller's tidy). */
function accumulate(grads: Map<string, Tensor>, named: tf.NamedTensorMap): void {
  for (const [name, g] of Object.entries(named)) {
    const prev = grads.get(name)!;
    grads.set(name, tf.keep(tf.add(prev, g)));
    prev.dispose();
  }
}

/** tfjs's error for a function that reads none of the variables asked about (a frozen encoder). */
function readsNoParameter(err: unknown): boolean {
  return err instanceof Error && /Cannot find a connection/.test(err.message);
}

/**
 * The whole batch fits one chunk on each side: the cache pass would only repeat the forward, so the
 * loss is differentiated through both encoders in one go (the same gradient, one forward fewer; the
 * activations of both sides are held at once).
 */
function singlePass<Q, T>(options: GradCacheStepOptions<Q, T>, query: Q[], target: T[], grads: Map<string, Tensor>): GradCacheStepResult {
  const { params, encoders, loss } = options;
  let lossValue = Number.NaN;
  try {
    tf.tidy(() => {
      const scalar = scalarLoss(loss);
      const f = () => scalar.sum(embedAll(encoders.query, [query], 'query'), embedAll(encoders.target, [target], 'target'));
      let value: Tensor;
      let g: tf.NamedTensorMap = {};
      try {
        ({ value, grads: g } = tf.variableGrads(f, params));
      } catch (err) {
        // Neither side reads `params` (both frozen): the loss, and zero gradients.
        if (!readsNoParameter(err)) throw err;
        value = f();
      }
      scalar.check();
      lossValue = value.dataSync()[0]!;
      accumulate(grads, g);
    });
  } catch (err) {
    for (const t of grads.values()) t.dispose();
    throw err;
  }
  return { loss: lossValue, grads };
}

/** One GradCache step: the loss over the whole batch and its parameter gradients, chunk by chunk. */
export function gradCacheStep<Q, T>(options: GradCacheStepOptions<Q, T>): GradCacheStepResult {
  const { params, encoders, batch, chunkSize, loss } = options;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new UnimeError(`gradCacheStep: chunkSize must be a positive integer, got ${chunkSize}`);
  if (batch.query.length === 0 || batch.target.length === 0) throw new UnimeError('gradCacheStep: the batch is empty');
  const names = params.map((p) => p.name);
  if (new Set(names).size !== names.length) throw new UnimeError(`gradCacheStep: parameter names must be unique, got ${names.join(', ')}`);
  for (const p of options.lossParams ?? []) if (!names.includes(p.name)) throw new UnimeError(`gradCacheStep: loss parameter ${p.name} is not one of params`);
  const qParts = chunks(batch.query, chunkSize);
  const tParts = chunks(batch.target, chunkSize);

  const grads = new Map<string, Tensor>();
  for (const p of params) grads.set(p.name, tf.zerosLike(p));
  if (qParts.length === 1 && tParts.length === 1) return singlePass(options, qParts[0]!, tParts[0]!, grads);
  let lossValue = Number.NaN;
  try {
    // 1-2: embeddings without activations, then the loss and d loss / d embeddings on the whole batch.
    const [gq, gt] = tf.tidy(() => {
      const q = embedAll(encoders.query, qParts, 'query');
      const t = embedAll(encoders.target, tParts, 'target');
      const scalar = scalarLoss(loss);
      const { value, grads: g } = tf.valueAndGrads((qe: Tensor, te: Tensor) => scalar.sum(qe, te))([q, t]);
      scalar.check();
      lossValue = value.dataSync()[0]!;
      if (options.lossParams && options.lossParams.length > 0) {
        accumulate(grads, tf.variableGrads(() => tf.sum(loss(q, t)) as tf.Scalar, options.lossParams).grads);
      }
      return [g[0]!, g[1]!] as [Tensor, Tensor];
    });
    // 3: re-forward each chunk under a tape; backpropagate its slice of the cached gradient.
    const backprop = <X>(encode: ChunkEncoder<X>, parts: X[][], cached: Tensor): void => {
      let offset = 0;
      for (const [index, part] of parts.entries()) {
        tf.tidy(() => {
          const g = tf.slice(cached, [offset, 0], [part.length, -1]);
          let pg: tf.NamedTensorMap;
          try {
            pg = tf.variableGrads(() => tf.sum(tf.mul(encode(part, index), g)) as tf.Scalar, params).grads;
          } catch (err) {
            // An encoder that reads none of `params` (a frozen side) contributes nothing.
            if (readsNoParameter(err)) return;
            throw err;
          }
          accumulate(grads, pg);
        });
        offset += part.length;
      }
    };
    try {
      backprop(encoders.query, qParts, gq);
      backprop(encoders.target, tParts, gt);
    } finally {
      gq.dispose();
      gt.dispose();
    }
  } catch (err) {
    for (const t of grads.values()) t.dispose();
    throw err;
  }
  return { loss: lossValue, grads };
}
