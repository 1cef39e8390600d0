/** Every op, one import. */

export { backward } from '../autograd/engine.ts';
export * from './attention.ts';
export * from './attention_qkv.ts';
export * from './batchnorm.ts';
export * from './conv.ts';
export * from './create.ts';
export * from './device.ts';
export * from './elementwise.ts';
export * from './embedding.ts';
export * from './loss.ts';
export * from './matmul.ts';
export * from './mul_by_device_scalar.ts';
export * from './nn.ts';
export * from './pool.ts';
export * from './reduce.ts';
export * from './view.ts';
