/**
 * Modules and layers: `import { nn } from 'meshtrain'` then `new nn.Linear(8, 4)`.
 * @example
 * const net = new nn.Sequential(new nn.Linear(8, 32), new nn.ReLU(), new nn.Linear(32, 2));
 */

export { Dropout, GELU, ReLU } from './activation.ts';
export { CausalSelfAttention, type GPTLayerOptions } from './attention.ts';
export { ModuleList, Sequential } from './container.ts';
export { Conv2d, type Conv2dOptions } from './conv.ts';
export { Embedding, type EmbeddingOptions } from './embedding.ts';
export { type FlatParameters, type FlattenOptions, flattenParameters } from './flat.ts';
export * as init from './init.ts';
export { withoutInit } from './init.ts';
export { Linear, type LinearOptions } from './linear.ts';
export { type ForwardHook, type ForwardPreHook, type LoadResult, Module, type NamedOptions, type ParamGradHook, type RemovableHandle } from './module.ts';
export { BatchNorm2d, type BatchNormOptions, type BatchNormRelu, LayerNorm, type LayerNormOptions } from './norm.ts';
export { AdaptiveAvgPool2d, MaxPool2d } from './pool.ts';
export { Flatten, Identity } from './shape.ts';
export { moduleToDevice } from './to_device.ts';
export { MLP, TransformerBlock, type TransformerBlockOptions } from './transformer.ts';
