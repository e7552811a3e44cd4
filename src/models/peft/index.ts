export * from './lora.js';
export * from './adapter-io.js';
