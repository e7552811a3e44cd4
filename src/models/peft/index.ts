export * from './lora.js';
export * from './adapter-io.js';
export * from './chain.js';
