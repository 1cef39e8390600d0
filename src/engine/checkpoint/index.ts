/** Sharded, layout-independent checkpoints and consolidated safetensors export. */

export { type LoadCheckpointOptions, type LoadedCheckpoint, loadCheckpoint, moduleShapeHint, type TensorRequest } from './load.ts';
export { type LoadModuleCheckpointOptions, loadModuleCheckpoint, type ModuleCheckpointOptions, saveModuleCheckpoint } from './module_checkpoint.ts';
export { type OpenCheckpoint, openCheckpoint, readLatestTag, type SavedTensor } from './reader.ts';
export { type ExportOptions, exportSafetensors, readSafetensors, type SafetensorsEntry, type SafetensorsFile, safetensorToTensor, writeSafetensors } from './safetensors.ts';
export { type SaveCheckpointOptions, type SavedCheckpoint, saveCheckpoint, type TensorShard } from './save.ts';
