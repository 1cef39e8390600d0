/** Every op, one import. */
export * from './elementwise.ts';
export * from './reduce.ts';
export * from './view.ts';
export * from './create.ts';
export * from './matmul.ts';
export { backward } from '../autograd/engine.ts';
export * from './conv.ts';
export * from './batchnorm.ts';
export * from './pool.ts';
export * from './nn.ts';
export * from './embedding.ts';
export * from './loss.ts';
export * from './attention.ts';
export * from './device.ts';
