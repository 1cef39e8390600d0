/** The engine: initialize() and the Engine, the DeepSpeed config, loss scaling and training progress. */
export { TrainingProgress, type ProgressOptions, type StepMetrics } from './progress.ts';
export {
  loadConfig, formatResolvedConfig, printResolvedConfig, type EngineConfig, type LoadConfigOptions, type LossScalerSpec,
  type ZeroConfig, type Fp16Config, type OffloadOptimizerConfig, type OffloadParamConfig, type OffloadDevice, type OptimizerSection,
  type SchedulerSection,
} from './config.ts';
export { configDefaultsTable, configDefaultsMarkdown, type ConfigDefaultRow } from './config_schema.ts';
export { parseJsonc } from './jsonc.ts';
export {
  DynamicLossScaler, StaticLossScaler, createLossScaler, type LossScaler, type LossScalerState, type DynamicLossScalerOptions,
} from './loss_scaler.ts';
export { hasOverflow } from './overflow.ts';
export { initialize, type InitializeOptions, type Initialized } from './initialize.ts';
export type { InitializedPipeline } from './initialize_pipeline.ts';
export { Engine, type EngineBackend, type EngineParts, type EngineZero } from './engine.ts';
export { formatMemoryReport, type MemoryReport, type MemoryBuffer, type MemoryLocation, type FormulaTerm, type FormulaTag } from './memory_report.ts';
export { DEFAULT_16BIT_FILENAME } from './save_16bit.ts';
export type { WallClockReport } from './wall_clock.ts';
export { ZERO_KEY_USAGE, formatZeroKeyUsage, type ZeroKeyUsage } from './config_usage.ts';
export type { LoadedEngineCheckpoint, LoadEngineCheckpointOptions, SaveEngineCheckpointOptions } from './engine_checkpoint.ts';
