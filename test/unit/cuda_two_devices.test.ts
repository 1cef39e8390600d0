/**
 * Two CUDA devices: copies between cuda:0, cuda:1 and the CPU keep every bit; ops run on cuda:1
 * (its own streams and allocator) equal the CPU within f32 rounding (1e-5 relative); a result
 * moved back to cuda:0 is unchanged; operands on two devices are refused. Needs two devices (on
 * the emulated device: MESHTRAIN_CUDA_EMU_DEVICES=2, as cuda_emu.test.ts runs it), else one SKIP
 * line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { add, cudaAllocatorStats, layerNorm, matmul, native, ones, randn, softmax, sum, type Tensor, tidy, zeros } from '../../src/index.ts';

const flat = (t: Tensor) => t.toList().flat(3) as number[];
function maxRelErr(got: number[], want: number[]): number {
  const scale = Math.max(1e-30, ...want.map(Math.abs));
  return Math.max(...got.map((g, i) => Math.abs(g - want[i]))) / scale;
}

const devices = native.deviceInfo().cudaDevices;
if (devices < 2) {
  test('two CUDA devices', () => console.log(`SKIP test/unit/cuda_two_devices: ${devices} CUDA device(s) here`));
} else {
  test('copies between cuda:0, cuda:1 and the CPU keep every bit', () => {
    tidy(() => {
      const x = randn([8, 16]);
      const there = x.to('cuda:0').to('cuda:1');
      assert.is(there.device, 'cuda:1');
      assert.equal(flat(there.to('cuda:0').to('cpu')), flat(x));
    });
  });

  test('ops on cuda:1 equal the CPU; a result moved to cuda:0 is unchanged; mixed devices are refused', () => {
    tidy(() => {
      const x = randn([8, 16]);
      const y = x.to('cuda:1');
      const before = cudaAllocatorStats('cuda:1').misses;
      assert.ok(maxRelErr(flat(add(y, y)), flat(add(x, x))) <= 1e-5, 'add');
      assert.ok(maxRelErr(flat(matmul(y, y.transpose(0, 1))), flat(matmul(x, x.transpose(0, 1)))) <= 1e-5, 'matmul');
      assert.ok(maxRelErr(flat(softmax(y)), flat(softmax(x))) <= 1e-5, 'softmax');
      const ln = layerNorm(y, [16], ones([16]).to('cuda:1'), zeros([16]).to('cuda:1'));
      assert.ok(maxRelErr(flat(ln), flat(layerNorm(x, [16], ones([16]), zeros([16])))) <= 1e-5, 'layerNorm');
      assert.ok(cudaAllocatorStats('cuda:1').misses > before, "cuda:1's allocator served the ops");
      const s = sum(y);
      assert.is(s.to('cuda:0').item(), s.item());
      assert.throws(() => add(x.to('cuda:0'), y), /add: operands on different devices \(f32 \[8, 16\] on cuda:0, f32 \[8, 16\] on cuda:1\)/);
    });
  });
}

test.run();
