export { PipelineEngine, type PipelineEngineOptions, type ScheduleName } from './engine.ts';
export { LayerSpec, type LayerSpecOptions, type PipeLayer, TiedLayerSpec, type TiedLayerSpecOptions } from './layer_spec.ts';
export { loadMeshCheckpoint, type MeshCheckpointOptions, saveMeshCheckpoint } from './mesh_checkpoint.ts';
export { PipelineModule, type PipelineModuleOptions, type Tie } from './module.ts';
export * from './schedule/index.ts';
export type { MicroBatch } from './stage_runtime.ts';
export { gatherTimelines, measuredSimulation } from './timeline.ts';
export { deferrableLinear, deferredWeightGradsRun } from './weight_grad.ts';
export type { ZeroPipelineOptions } from './zero_pipe.ts';
