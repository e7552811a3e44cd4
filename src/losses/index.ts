/** Losses: each a pure function of embedding tensors returning a scalar tensor. */
export { l2Normalize, stopGradient } from './common.js';
export { inbatchInfoNce, type InbatchInfoNceOptions } from './inbatch-infonce.js';
export {
  hardNegativeInfoNce,
  selectHardNegatives,
  type HardNegativeInfoNceOptions,
  type HardNegativeInfoNceResult,
  type HardNegativeSelection,
  type HardNegativeStats,
} from './hard-negative-infonce.js';
export { inbatchKlDistillation, type InbatchKlDistillationOptions, type KlDirection } from './inbatch-kl-distillation.js';
export { clipInfoNce, initClipLogScale, type ClipInfoNceOptions } from './clip-infonce.js';
export { sigmoidPairLoss, initSigmoidPairParameters, type SigmoidPairLossOptions } from './sigmoid-pair-loss.js';
export { positiveCosineLoss } from './positive-cosine-loss.js';
export { procLipDistillation, procLipDistillationTerms, type ProcLipDistillationOptions, type ProcLipDistillationTerms } from './proclip-distillation.js';
