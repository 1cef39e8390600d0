// engine.memoryReport() on 4 ranks: stages 1, 2 and 3 (f32 AdamW, GPT tiny) within 5% of ZeRO's
// formula plus the named buffers; the checks and the 2-rank cases are in engine_memory.test.ts.
import { test } from 'uvu';
import { stagesTest } from './memory_checks.ts';

stagesTest(4);

test.run();
