/**
 * unime as a library: the same pieces the CLI is built from.
 */
export { UnimeError, NotImplementedYetError } from './errors.js';
export * as runtime from './runtime/index.js';
export * as recipes from './recipes/index.js';
export { SafetensorsFile, SafetensorsError, writeSafetensors, parseHeader } from './io/safetensors.js';
export { openCheckpoint, writeShardedSafetensors, CheckpointError, type Checkpoint } from './io/checkpoint.js';
export { readHfConfig, parseHfConfig, describeConfig, HfConfigError, type HfConfig } from './io/hf-config.js';
export { writeFileAtomic, writeBytesAtomic, writeJsonAtomic } from './io/atomic.js';
export * as models from './models/index.js';
export * as tokenizers from './tokenizers/index.js';
export * as losses from './losses/index.js';
export * as train from './train/index.js';
export * as images from './images/index.js';
export * as data from './data/mmeb.js';
