export * from './config.js';
export * from './rope.js';
export * from './modules.js';
export * from './decoder.js';
export * from './builders.js';
export * from './load.js';
