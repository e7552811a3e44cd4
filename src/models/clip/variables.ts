/**
 * Named variables for the CLIP-side models: each is named by a caller-given prefix plus its Hugging
 * Face key, so a training checkpoint matches variables by name in any process (tfjs's default names
 * come from a process-wide counter). The same rule as the LoRA variables of src/models/peft/lora.ts.
 */
import { tf, type Tensor } from '../../runtime/tf.js';

/** A variable called `name`, or `name#2`, `name#3`, ... while a live variable holds the name. */
export function namedVariable(value: Tensor, trainable: boolean, name: string): tf.Variable {
  const taken = tf.engine().registeredVariables;
  let unique = name;
  for (let n = 2; unique in taken; n++) unique = `${name}#${n}`;
  return tf.variable(value, trainable, unique);
}

/** A variable from float32 data; the tensor made for it is released. */
export function variableFrom(data: Float32Array, shape: number[], trainable: boolean, name: string): tf.Variable {
  const t = tf.tensor(data, shape, 'float32');
  try {
    return namedVariable(t, trainable, name);
  } finally {
    t.dispose();
  }
}
