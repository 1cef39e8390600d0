export * from './pipeline.ts';
export * from './tensor.ts';
