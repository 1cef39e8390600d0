/**
 * The CUDA suites on the emulated device: the addon built with -DMESHTRAIN_CUDA_EMU=ON (build-emu,
 * see docs/gpu.md) runs native/cuda's kernels, launchers and cuBLASLt calls on the CPU, with guard
 * bytes, NaN-filled fresh memory, pointer and launch checks. Each suite below runs in a child
 * process against that addon with its own real-GPU tolerances and must pass without skipping.
 * Without the emulation build it prints one SKIP line.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const build = path.resolve(root, process.env.MESHTRAIN_CUDA_EMU_BUILD ?? 'build-emu');
const addon = path.join(build, 'Release', 'meshtrain.node');
const libDir = path.join(build, 'emu-lib');
/** The suites that must pass on the emulated device (add a CUDA suite here once it does), with their environment. */
const SUITES: [string, Record<string, string>][] = [
  ['unit/cuda_runtime', {}],
  ['unit/cuda_ops', {}],
  ['unit/cuda_train', {}],
  ['unit/cuda_conv', {}],
  // Grouped/dilated/depthwise conv2d on cuda:0: through the emulated cuDNN, then the direct kernels.
  ['unit/conv_groups', { MT_TEST_DEVICES: 'cuda:0' }],
  ['unit/conv_groups', { MT_TEST_DEVICES: 'cuda:0', MESHTRAIN_CUDA_CONV: 'direct' }],
  ['unit/cuda_bn_pool_tiles', {}],
  // Batch norm on 16-bit weight/bias without casts, the batch counter in its launch; conv2d's kept NHWC filter.
  ['unit/cuda_bn_affine16', {}],
  // ReLU and the residual add fused into batch norm: bit for bit the separate ops.
  ['unit/cuda_bn_relu', {}],
  // ... and a ResNet-18 bf16 training step with it (about 30 s here).
  ['unit/cuda_resnet_bn_relu', {}],
  ['unit/cuda_conv_filter_nhwc', {}],
  // MESHTRAIN_CUDNN_BENCHMARK=1 (cuDNN's Find per conv plan), switched per case: searched on cuda:1, flag-off twins on cuda:0.
  ['unit/cuda_cudnn_benchmark', { MESHTRAIN_CUDA_EMU_DEVICES: '2' }],
  // A bf16 ResNet-50 forward + backward: its device-op budget and per-kind counts (counts only: kernels skipped).
  ['unit/cuda_census_resnet', { MESHTRAIN_CUDA_EMU_SKIP_WORK: '1' }],
  ['unit/cuda_index_checks', {}],
  ['unit/vocab_range', {}],
  ['unit/cuda_emu_checks', {}],
  // The timing-only mode (bench/gpu_host_floor.ts): same census as with the kernels running, checks still fire.
  ['unit/cuda_emu_skip', { MESHTRAIN_CUDA_EMU_SKIP_WORK: '1' }],
  // Stream capture and graph replay (emu/graph.cc), with the kernels running and skipped.
  ['unit/cuda_emu_graph', {}],
  ['unit/cuda_emu_graph', { MESHTRAIN_CUDA_EMU_SKIP_WORK: '1' }],
  // The same capture scenarios through the runtime alone, whose codes the GPU run holds the emulator to.
  ['unit/cuda_capture_codes', {}],
  ['unit/cuda_two_devices', { MESHTRAIN_CUDA_EMU_DEVICES: '2' }],
  ['unit/cuda_attention', {}],
  ['unit/cuda_attention_qkv', {}],
  // The mma.sync forward (MESHTRAIN_ATTENTION=fa2, switched per call inside the file) vs f64 and the WMMA forward.
  ['unit/cuda_attention_fa2', {}],
  // The mma.sync backward (MESHTRAIN_ATTENTION=fa2 around backward() only) vs f64 and the WMMA backward.
  ['unit/cuda_attention_fa2_bwd', {}],
  // Every fused attention kernel instance once (what scripts/sanitize_attention.sh sanitizes on a GPU): census only.
  ['unit/cuda_attention_instances', { MESHTRAIN_CUDA_EMU_SKIP_WORK: '1' }],
  // The emulator's thread schedules: a hidden refill race shown by the warps schedules; attention bit for bit under all three.
  ['unit/cuda_emu_schedule', {}],
  ['unit/cuda_gpt_fused', {}],
  // The 16-byte embedding-backward and register-cached layer-norm kernels: bit for bit their scalar twins.
  ['unit/cuda_memory_kernels', {}],
  // Odd-width products at a padded row pitch (MESHTRAIN_PAD_LD, switched per case): bit for bit the dense run.
  ['unit/cuda_row_pitch', {}],
  ['unit/cuda_engine', {}],
  ['unit/cuda_engine_fp16', {}],
  ['unit/f16_matmul', {}],
  ['unit/cuda_step_syncs', {}],
  ['unit/cuda_pinned', {}],
  ['unit/cuda_nccl_emu', {}],
  ['unit/cuda_nccl_create_emu', {}],
  ['dist/cuda_staging', {}],
  ['dist/cuda_zero', {}],
  ['dist/cuda_pipeline', {}],
  ['dist/cuda_engine_checkpoint', {}],
  ['dist/cuda_pipeline_plain_checkpoint', {}],
  ['dist/cuda_pipeline_buffers_checkpoint', {}],
  ['dist/cuda_tensor_parallel', {}],
  ['dist/cuda_tp_vocab', {}],
  // Tensor-parallel attention through qkvAttention: equal to the unsharded block, no strided copies (2 ranks on cuda:0).
  ['dist/cuda_tp_qkv', {}],
  ['unit/cuda_census', {}],
  // The census's device-time mode: same counts timed, every compute-stream op timed once, one wait.
  ['unit/cuda_census_time', {}],
  // ZeRO 2 writing into its bucket, ZeRO 3 adopting first gradients: device-op budgets of their steps.
  ['unit/cuda_census_zero', {}],
  // Runtime calls per op (the emulated runtime's counters): no cudaGetDevice, cudaFuncSetAttribute or event churn in a warm GPT step.
  ['unit/cuda_api_calls', {}],
  ['unit/cuda_linear_epilogue', {}],
  // linear's fused bias + GELU (cuBLASLt's GELU_AUX_BIAS), and against gelu(linear()) on cuda:0.
  ['unit/cuda_linear_gelu', {}],
  ['unit/linear_gelu', { MT_TEST_DEVICES: 'cuda:0' }],
  // Gradients written into .grad (cuBLASLt beta = 1 with BGRADB, layer norm and embedding adding): cuda:0 only.
  ['unit/grad_into', { MT_TEST_DEVICES: 'cuda:0' }],
  // First gradients adopted as .grad instead of copied: bit for bit vs copying, cuda:0 only.
  ['unit/grad_adopt', { MT_TEST_DEVICES: 'cuda:0' }],
  ['unit/cuda_adam_multi', {}],
  ['unit/cuda_sgd_multi', {}],
  // CUDA graphs: captured forward+backward replayed equal eager steps; the graph's memory pool; refusals.
  ['unit/cuda_graph', {}],
  // engine.backward captured, engine.step eager: ZeRO stages 0, 2, 3 on one rank bit for bit eager.
  ['unit/cuda_graph_engine', {}],
  // Dropout and rand inside a graph: each replay draws what the eager step would (the device's generator base).
  ['unit/cuda_graph_dropout', {}],
  // The rest of the op suite's deviceTest files on cuda:0 (the ones above run alone): the H200 run found
  // split_grad failing there, which npm test (CPU only) could not see.
  [
    'unit/(arange_device|autograd_shared_grad|clip_grad|conv|elementwise|f16_compute|matmul|nn|nn_layers|norm_pool|optim|reshape_view|split_grad|tensor|random_fma)',
    { MT_TEST_DEVICES: 'cuda:0' },
  ],
  ['unit/native_typed_ints', {}],
  ['unit/fp16_unscale_f32', {}],
  ['unit/optim_grad_scale', {}],
  // Not here: unit/cuda_resnet (about 4 minutes on the emulator; run it by hand), unit/cuda_nccl (needs a real GPU).
];

/** Runs one test file against the emulated addon; returns its exit status and output. */
function runSuite(suite: string, env: Record<string, string>): { status: number | null; output: string; seconds: number } {
  const started = performance.now();
  const [dir, name] = suite.split('/');
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'node_modules/uvu/bin.js', `test/${dir}`, `^${name}\\.test\\.ts$`], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    // CPU twins off (test/helpers/cpu_twins.ts): npm test runs them in the same files already.
    env: { ...process.env, MESHTRAIN_ADDON: addon, MESHTRAIN_CUDA_LIB_PATH: libDir, OMP_NUM_THREADS: '1', MESHTRAIN_TEST_CPU_TWINS: '0', ...env },
  });
  return { status: r.status, output: `${r.stdout}${r.stderr}`, seconds: (performance.now() - started) / 1000 };
}

test('every deviceTest file of test/unit runs on the emulated cuda:0 through some suite above', () => {
  const unit = path.join(root, 'test', 'unit');
  const files = readdirSync(unit).filter((f) => f.endsWith('.test.ts') && /^ *deviceTest\(/m.test(readFileSync(path.join(unit, f), 'utf8')));
  const covered = SUITES.filter(([name]) => name.startsWith('unit/')).map(([name]) => new RegExp(`^${name.slice(5)}\\.test\\.ts$`));
  const missing = files.filter((f) => !covered.some((re) => re.test(f)));
  assert.equal(missing, [], `deviceTest files no suite runs on the emulated device: ${missing.join(', ')}`);
});

if (!existsSync(addon)) {
  test('CUDA suites on the emulated device', () => {
    console.log(`SKIP test/unit/cuda_emu: no emulation build at ${addon} (npx cmake-js compile --out build-emu --CDMESHTRAIN_CUDA_EMU=ON)`);
  });
} else {
  for (const [name, env] of SUITES) {
    test(`${name} on the emulated device`, () => {
      const r = runSuite(name, env);
      const tail = r.output.slice(-4000);
      assert.not.match(r.output, /\bSKIP\b/, `${name} skipped on the emulated device:\n${tail}`);
      assert.match(r.output, /Total:\s+[1-9]/, `${name} ran no test:\n${tail}`);
      assert.is(r.status, 0, `${name} failed on the emulated device (exit ${r.status}):\n${tail}`);
      console.log(`  ${name}: passed on the emulated device in ${r.seconds.toFixed(1)} s`);
    });
  }
}

test.run();
