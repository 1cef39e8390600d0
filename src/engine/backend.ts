/**
 * What the Engine drives: ZeRO stage 0 (DataParallel + a plain optimizer) or a partitioned ZeRO
 * optimizer for stages 1-3 (ZeroStage12, ZeroStage3), which the engine treats alike through
 * ZeroOptimizer (src/zero/zero_optimizer.ts).
 */
import type { DataParallel } from '../dist/data_parallel.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import type { ZeroOptimizer } from '../zero/zero_optimizer.ts';
import type { MemoryBuffer } from './memory_report.ts';

/**
 * The partitioned optimizer of ZeRO stages 1-3 as the engine drives it: the shared ZeroOptimizer
 * surface, and optionally the buffers it holds beyond ZeRO's formula for the memory report.
 */
export interface EngineZero extends ZeroOptimizer {
  /** Named buffers beyond the formula's terms (ZeroStage3 has it; memory_report.ts reads ZeroStage12's accessors). */
  memoryBuffers?(): MemoryBuffer[];
}

export type EngineBackend =
  | { stage: 0; dp: DataParallel; optimizer: Optimizer<{ lr: number }> }
  | { stage: 1 | 2 | 3; zero: EngineZero };
