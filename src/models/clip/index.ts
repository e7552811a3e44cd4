export * from './text-tower.js';
export * from './model.js';
export * from './init.js';
export * from './variables.js';
