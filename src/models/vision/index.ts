export * from './config.js';
export * from './tower.js';
export * from './load.js';
