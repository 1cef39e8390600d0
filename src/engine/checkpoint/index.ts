/** Sharded, layout-independent checkpoints and consolidated safetensors export. */
export { saveCheckpoint, type SaveCheckpointOptions, type SavedCheckpoint, type TensorShard } from './save.ts';
export { loadCheckpoint, type LoadCheckpointOptions, type LoadedCheckpoint, type TensorRequest } from './load.ts';
export { openCheckpoint, readLatestTag, type OpenCheckpoint, type SavedTensor } from './reader.ts';
export { saveModuleCheckpoint, loadModuleCheckpoint, type ModuleCheckpointOptions, type LoadModuleCheckpointOptions } from './module_checkpoint.ts';
export { exportSafetensors, readSafetensors, safetensorToTensor, writeSafetensors, type ExportOptions, type SafetensorsEntry, type SafetensorsFile } from './safetensors.ts';
