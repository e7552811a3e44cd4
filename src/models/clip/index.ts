export * from './text-tower.js';
export * from './model.js';
export * from './init.js';
export * from './variables.js';
export * from './format.js';
export * from './heads.js';
export * from './dual-encoder.js';
export * from './llm-features.js';
