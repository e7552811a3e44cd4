export * from './text/index.js';
export * from './pooling.js';
export * from './mask.js';
export * from './registry.js';
export * from './peft/index.js';
export * from './vision/index.js';
export * from './text-embedder.js';
