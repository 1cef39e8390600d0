/** The engine: initialize() and the Engine, the DeepSpeed config, loss scaling and training progress. */

export {type EngineConfig, type Fp16Config, formatResolvedConfig, type LoadConfigOptions, type LossScalerSpec,
  loadConfig, type OffloadDevice, type OffloadOptimizerConfig, type OffloadParamConfig, type OptimizerSection,printResolvedConfig, 
  type SchedulerSection,
  type ZeroConfig, 
} from './config.ts';
export { type ConfigDefaultRow, configDefaultsMarkdown, configDefaultsTable } from './config_schema.ts';
export { formatZeroKeyUsage, ZERO_KEY_USAGE, type ZeroKeyUsage } from './config_usage.ts';
export { Engine, type EngineBackend, type EngineParts, type EngineZero } from './engine.ts';
export type { LoadEngineCheckpointOptions, LoadedEngineCheckpoint, SaveEngineCheckpointOptions } from './engine_checkpoint.ts';
export { type Initialized, type InitializeOptions, initialize } from './initialize.ts';
export type { InitializedPipeline } from './initialize_pipeline.ts';
export { parseJsonc } from './jsonc.ts';
export {createLossScaler, 
  DynamicLossScaler, type DynamicLossScalerOptions,type LossScaler, type LossScalerState, StaticLossScaler, 
} from './loss_scaler.ts';
export { type FormulaTag, type FormulaTerm, formatMemoryReport, type MemoryBuffer, type MemoryLocation, type MemoryReport } from './memory_report.ts';
export { hasOverflow } from './overflow.ts';
export { type ProgressOptions, type StepMetrics, TrainingProgress } from './progress.ts';
export { DEFAULT_16BIT_FILENAME } from './save_16bit.ts';
export type { WallClockReport } from './wall_clock.ts';
