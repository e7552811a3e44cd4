/**
 * UniME stage 1, textual discriminative knowledge distillation: match the student's in-batch similarity
 * distribution to the teacher's. Both sides are L2-normalised; for text i,
 *   P_i(j) = softmax_j(e_i . e_j / tau) over the batch (student with tau_s, teacher with tau_t),
 *   L = sum_i KL(P_t_i || P_s_i)   (direction 'teacher-student', the default), or KL(P_s_i || P_t_i).
 * Only similarity patterns are compared, so the two embedding widths may differ. The teacher gets no
 * gradient. Defaults: includeDiagonal true (the paper's sum runs over every j in the batch, self included);
 * reduction 'mean' (sum over rows / B, PyTorch's 'batchmean': the gradient scale does not move with the batch
 * size; 'sum' is the paper's formula as printed); tau_s = tau_t = 0.02 (not published; a recipe field).
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { logSoftmax } from '../runtime/native/ops.js';
import { UnimeError } from '../errors.js';
import { expectMatrix, expectPositive, l2Normalize, stopGradient } from './common.js';

export type KlDirection = 'teacher-student' | 'student-teacher';

export interface InbatchKlDistillationOptions {
  studentTemperature?: number;
  teacherTemperature?: number;
  /** 'teacher-student': KL(P_teacher || P_student) (default); 'student-teacher': KL(P_student || P_teacher), as printed in the paper. */
  direction?: KlDirection;
  /** 'mean' (default): sum over rows / B; 'sum': the sum over rows. */
  reduction?: 'mean' | 'sum';
  /** Keep j = i (self-similarity) in each row's softmax; default true, as published. */
  includeDiagonal?: boolean;
}

export function inbatchKlDistillation(student: Tensor, teacher: Tensor, options: InbatchKlDistillationOptions = {}): Tensor {
  const name = 'inbatchKlDistillation';
  const tauS = options.studentTemperature ?? 0.02;
  const tauT = options.teacherTemperature ?? 0.02;
  expectPositive(tauS, 'studentTemperature', name);
  expectPositive(tauT, 'teacherTemperature', name);
  const direction = options.direction ?? 'teacher-student';
  if (direction !== 'teacher-student' && direction !== 'student-teacher') throw new UnimeError(`${name}: direction must be 'teacher-student' or 'student-teacher', got ${String(direction)}`);
  const reduction = options.reduction ?? 'mean';
  if (reduction !== 'mean' && reduction !== 'sum') throw new UnimeError(`${name}: reduction must be 'mean' or 'sum', got ${String(reduction)}`);
  const includeDiagonal = options.includeDiagonal ?? true;
  const [b] = expectMatrix(student, 'student', name);
  const [bt] = expectMatrix(teacher, 'teacher', name);
  if (bt !== b) throw new UnimeError(`${name}: student has ${b} rows, teacher ${bt}; they must embed the same texts`);
  if (!includeDiagonal && b < 2) throw new UnimeError(`${name}: without the diagonal a batch needs at least 2 texts, got ${b}`);

  return tf.tidy(() => {
    const gram = (e: Tensor, tau: number): Tensor => {
      const n = l2Normalize(e);
      const sims = tf.div(tf.matMul(n, n, false, true), tau);
      if (includeDiagonal) return sims;
      // Row i without column i: gather the B*(B-1) off-diagonal entries, row-major.
      const idx = new Int32Array(b * (b - 1));
      let t = 0;
      for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) if (i !== j) idx[t++] = i * b + j;
      return tf.reshape(tf.gather(tf.reshape(sims, [-1]), tf.tensor1d(idx, 'int32')), [b, b - 1]);
    };
    const logPs = logSoftmax(gram(student, tauS));
    const logPt = logSoftmax(gram(stopGradient(teacher), tauT));
    const [logP, logQ] = direction === 'teacher-student' ? [logPt, logPs] : [logPs, logPt];
    const total = tf.sum(tf.mul(tf.exp(logP), tf.sub(logP, logQ)));
    return reduction === 'mean' ? tf.div(total, b) : total;
  });
}
