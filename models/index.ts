/**
 * Model zoo (plain model code, no parallelism): `import { resnet101, GPT, gptConfig } from 'meshtrain/models'`.
 * @example
 * const model = resnet101({ numClasses: 10 });
 * const gpt = new GPT(gptConfig('124M'));
 */
export { mlp, type MLPOptions } from './mlp.ts';
export { GPT, GPT_SIZES, gptConfig, gptKeyFromFlatName, gptParamCount, type GPTConfig, type GPTSize } from './gpt.ts';
export { gptPipelineLayers, GPTPositions } from './gpt_pipeline.ts';
export { blockTensorParallelPlan, type GPT3DLayers, gptTensorParallelPipelineLayers } from './gpt_pipeline_tp.ts';
export {
  BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet101, resnet152, resnetParamCount, type ResNetOptions,
} from './resnet.ts';
