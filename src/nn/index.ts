/**
 * Modules and layers: `import { nn } from 'meshtrain'` then `new nn.Linear(8, 4)`.
 * @example
 * const net = new nn.Sequential(new nn.Linear(8, 32), new nn.ReLU(), new nn.Linear(32, 2));
 */
export { Module, type ForwardHook, type ForwardPreHook, type ParamGradHook, type RemovableHandle, type NamedOptions, type LoadResult } from './module.ts';
export { flattenParameters, type FlatParameters, type FlattenOptions } from './flat.ts';
export { moduleToDevice } from './to_device.ts';
export * as init from './init.ts';
export { withoutInit } from './init.ts';
export { Linear, type LinearOptions } from './linear.ts';
export { Conv2d, type Conv2dOptions } from './conv.ts';
export { BatchNorm2d, LayerNorm, type BatchNormOptions, type LayerNormOptions } from './norm.ts';
export { Embedding, type EmbeddingOptions } from './embedding.ts';
export { ReLU, GELU, Dropout } from './activation.ts';
export { MaxPool2d, AdaptiveAvgPool2d } from './pool.ts';
export { Flatten, Identity } from './shape.ts';
export { Sequential, ModuleList } from './container.ts';
export { CausalSelfAttention, type GPTLayerOptions } from './attention.ts';
export { MLP, TransformerBlock, type TransformerBlockOptions } from './transformer.ts';
