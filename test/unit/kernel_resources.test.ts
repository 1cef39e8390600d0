/**
 * bench/kernel_resources.ts reads ptxas -v output into per-kernel records; nvcc is not needed here:
 * the text is what ptxas 13 prints for sm_90.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parsePtxas } from '../../bench/kernel_resources.ts';

const text = `ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90'
ptxas info    : Function properties for _Z3fooPf
    16 bytes stack frame, 16 bytes spill stores, 24 bytes spill loads
ptxas info    : Used 96 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function '_Z3barv' for 'sm_90'
ptxas info    : Function properties for _Z3barv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 22 registers, used 0 barriers, 352 bytes cmem[0]
`;

test('parsePtxas: registers, spills, stack, static shared memory and the warps the registers allow', () => {
  const [foo, bar] = parsePtxas('x.cu', text);
  assert.equal(foo, { file: 'x.cu', kernel: '_Z3fooPf', registers: 96, stackBytes: 16, spillStores: 16, spillLoads: 24, sharedBytes: 2048, warpsByRegisters: 21 });
  // 22 registers round up to 24 per thread (256 per warp): 65536 / 768 = 85 warps, capped at 64.
  assert.equal(bar, { file: 'x.cu', kernel: '_Z3barv', registers: 22, stackBytes: 0, spillStores: 0, spillLoads: 0, sharedBytes: 0, warpsByRegisters: 64 });
  assert.equal(parsePtxas('y.cu', 'ptxas info    : 0 bytes gmem\n'), []);
});

test.run();
