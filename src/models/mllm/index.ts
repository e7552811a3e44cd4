export * from './types.js';
export * from './prepare.js';
export * from './projector.js';
export * from './llava.js';
export * from './phi3-v.js';
export * from './text-only.js';
export * from './load.js';
export * from './embedder.js';
