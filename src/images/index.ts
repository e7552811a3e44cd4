export * from './decode.js';
export * from './zip.js';
export * from './resample.js';
export * from './processor.js';
export * from './anyres.js';
