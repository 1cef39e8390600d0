/**
 * The CUDA suites on the emulated device: the addon built with -DMESHTRAIN_CUDA_EMU=ON (build-emu,
 * see docs/gpu.md) runs native/cuda's kernels, launchers and cuBLASLt calls on the CPU, with guard
 * bytes, NaN-filled fresh memory, pointer and launch checks. The suites below run against that
 * addon with their own real-GPU tolerances, those of one environment together in one child process
 * (one uvu test each group), and every file must run, pass and not skip. Without the emulation build
 * it prints one SKIP line.
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
  // The rest of the exported ops (op_device_coverage.test.ts checks every one has a cuda_* case).
  ['unit/cuda_ops_scalars_views', {}],
  ['unit/cuda_ops_create_inplace', {}],
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
  // The backward's 16-byte row-dot pre-pass: bit for bit the warp-per-row kernel it replaced (rows off the grid).
  ['unit/cuda_attention_dot', {}],
  // cuDNN's fused attention graphs on the reference cuDNN's graph API (checked, then run as written) vs f64, plans, refusals.
  ['unit/cuda_attention_cudnn', {}],
  // ... and that reference graph API refuses what cuDNN refuses (one small graph per misuse).
  ['unit/cuda_emu_cudnn', {}],
  // Every fused attention kernel instance once (what scripts/sanitize_attention.sh sanitizes on a GPU): census only.
  ['unit/cuda_attention_instances', { MESHTRAIN_CUDA_EMU_SKIP_WORK: '1' }],
  // The emulator's thread schedules: a hidden refill race shown by the warps schedules; attention bit for bit under all three.
  ['unit/cuda_emu_schedule', {}],
  ['unit/cuda_gpt_fused', {}],
  // The 16-byte embedding-backward and register-cached layer-norm kernels: bit for bit their scalar twins.
  ['unit/cuda_memory_kernels', {}],
  // Row-broadcast binary ops (GPT's position add, bias adds): binaryRows, the CPU's values bit for bit.
  ['unit/cuda_binary_rows', {}],
  // The one-pass layer norm backward: the CPU op's values, the kernels' summation order bit for bit.
  ['unit/cuda_layernorm_onepass', {}],
  // Odd-width products at a padded row pitch (MESHTRAIN_PAD_LD, switched per case): bit for bit the dense run.
  ['unit/cuda_row_pitch', {}],
  // A vocabulary padded inside GPT (makeVocabSizeDivisibleBy): bit for bit the unpadded model; the pitched logits gradient handed on whole.
  ['unit/gpt_padded_vocab', {}],
  ['unit/cuda_engine', {}],
  ['unit/cuda_engine_fp16', {}],
  // engine.step() decided on the device (no host read) bit for bit the host-decided step; skipped steps taken back.
  ['unit/cuda_engine_decided', {}],
  // The pipeline's last stage sums its losses on the device: read once per batch, the JS sum's bits.
  ['unit/pipeline_loss_sum', {}],
  ['unit/f16_matmul', {}],
  ['unit/cuda_step_syncs', {}],
  ['unit/cuda_pinned', {}],
  ['unit/cuda_nccl_emu', {}],
  ['unit/cuda_nccl_create_emu', {}],
  ['dist/cuda_staging', {}],
  ['dist/cuda_zero', {}],
  ['dist/cuda_pipeline', {}],
  // The plain pipeline step decided on cuda:0 (1 rank and 2 over shm) bit for bit the host-decided one.
  ['dist/cuda_pipeline_decided', {}],
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
  ['unit/cuda_linear_dgelu', {}],
  // linear's residual added in the product (cuBLASLt's C, beta = 1), and the block's / GPT step's census with it.
  ['unit/cuda_linear_residual', {}],
  ['unit/linear_gelu', { MT_TEST_DEVICES: 'cuda:0' }],
  // Gradients written into .grad (cuBLASLt beta = 1 with BGRADB, layer norm and embedding adding): cuda:0 only.
  ['unit/grad_into', { MT_TEST_DEVICES: 'cuda:0' }],
  // First gradients adopted as .grad instead of copied: bit for bit vs copying, cuda:0 only.
  ['unit/grad_adopt', { MT_TEST_DEVICES: 'cuda:0' }],
  // A produced tensor's second gradient added into the one held for it (linear's beta = 1): cuda:0 only.
  ['unit/grad_sum_into', { MT_TEST_DEVICES: 'cuda:0' }],
  ['unit/grad_sum_into_layernorm', { MT_TEST_DEVICES: 'cuda:0' }],
  ['unit/cuda_adam_multi', {}],
  ['unit/cuda_sgd_multi', {}],
  // The device-decided step's rule (cuda.stepDecision bit for bit the CPU reference and the host's arithmetic).
  ['unit/step_decision', {}],
  // fp16 dynamic loss scaling's update on the device (cuda.lossScalerUpdate) bit for bit the CPU twin; chained after stepDecision, eager and in a graph.
  ['unit/loss_scaler_update', {}],
  // mulByDeviceScalar captured in a CUDA graph: each replay multiplies by the scalar's value then.
  ['unit/cuda_graph_device_scalar', {}],
  // Reads the host takes later (the decided step's outcome): round trip, no wait once done, capture refused, no leak.
  ['unit/cuda_read_later', {}],
  // adamMulti/sgdMulti obeying a device decision {skip, gradScale}: bit for bit eager at gradScale, skip untouched, captured replays follow it.
  ['unit/cuda_decided_optim', {}],
  // CUDA graphs: captured forward+backward replayed equal eager steps; the graph's memory pool; refusals.
  ['unit/cuda_graph', {}],
  // The caching allocator's size-class free lists: class rounding, reuse across the 1 MiB edge, emptying.
  ['unit/cuda_block_lists', {}],
  // engine.backward captured, engine.step eager: ZeRO stages 0, 2, 3 on one rank bit for bit eager.
  ['unit/cuda_graph_engine', {}],
  // engine.forward, backward and step() in one graph (the device-decided step): bit for bit eager steps, a NaN step skipped.
  ['unit/cuda_graph_engine_step', {}],
  // Dropout and rand inside a graph: each replay draws what the eager step would (the device's generator base).
  ['unit/cuda_graph_dropout', {}],
  // The rest of the op suite's deviceTest files on cuda:0 (the ones above run alone): the H200 run found
  // split_grad failing there, which npm test (CPU only) could not see.
  [
    'unit/(arange_device|autograd_shared_grad|clip_grad|clip_grad_on_device|conv|elementwise|f16_compute|matmul|mul_by_device_scalar|nn|nn_layers|norm_pool|optim|reshape_view|split_grad|tensor|random_fma)',
    { MT_TEST_DEVICES: 'cuda:0' },
  ],
  ['unit/native_typed_ints', {}],
  ['unit/fp16_unscale_f32', {}],
  ['unit/optim_grad_scale', {}],
  // Not here: unit/cuda_resnet (about 4 minutes on the emulator; run it by hand), unit/cuda_nccl (needs a real GPU).
];

/**
 * SUITES grouped by environment, in order of first appearance: each group runs in ONE child process.
 * A child's start-up (node, tsx's loader, src/ and the addon) costs about 1.2 s of CPU on the 2-core CI
 * machine, so one child per file spent over a minute of the suite's 15 on start-ups alone.
 */
function groups(): { suites: string[]; env: Record<string, string> }[] {
  const byEnv = new Map<string, { suites: string[]; env: Record<string, string> }>();
  for (const [suite, env] of SUITES) {
    const key = JSON.stringify(Object.entries(env).sort());
    const g = byEnv.get(key) ?? { suites: [], env };
    g.suites.push(suite);
    byEnv.set(key, g);
  }
  return [...byEnv.values()];
}

/** Runs the test files of `suites` in one child against the emulated addon; returns its exit status and output. */
function runGroup(suites: string[], env: Record<string, string>): { status: number | null; output: string; seconds: number } {
  const started = performance.now();
  const pattern = `^(?:${suites.join('|')})\\.test\\.ts$`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'node_modules/uvu/bin.js', 'test', pattern], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000 * suites.length,
    maxBuffer: 256 * 1024 * 1024,
    // CPU twins off (test/helpers/cpu_twins.ts): npm test runs them in the same files already. No
    // colours: checkRan reads uvu's per-file lines.
    env: { ...process.env, MESHTRAIN_ADDON: addon, MESHTRAIN_CUDA_LIB_PATH: libDir, OMP_NUM_THREADS: '1', MESHTRAIN_TEST_CPU_TWINS: '0', NO_COLOR: '1', ...env },
  });
  return { status: r.status, output: `${r.stdout}${r.stderr}`, seconds: (performance.now() - started) / 1000 };
}

/** The test files `suite` names (uvu matches its pattern case-insensitively). */
function suiteFiles(suite: string): string[] {
  const [dir, name] = suite.split('/');
  const re = new RegExp(`^${name}\\.test\\.ts$`, 'i');
  return readdirSync(path.join(root, 'test', dir)).filter((f) => re.test(f)).map((f) => `${dir}/${f}`);
}

/** Each test file's passed and total tests in uvu's output: its header line, then "(passed / total)" per suite of the file. */
function fileResults(output: string): Map<string, { passed: number; total: number }> {
  const results = new Map<string, { passed: number; total: number }>();
  let file: { passed: number; total: number } | null = null;
  for (const line of output.split('\n')) {
    const t = line.trim();
    if (/^(?:unit|dist)\/\S+\.test\.ts$/.test(t)) {
      file = { passed: 0, total: 0 };
      results.set(t, file);
    } else if (/^Total:/.test(t)) file = null;
    const m = /\((\d+) \/ (\d+)\)$/.exec(t);
    if (file && m) {
      file.passed += Number(m[1]);
      file.total += Number(m[2]);
    }
  }
  return results;
}

/** uvu's failure reports in `output` (printed after each failing file, so not necessarily at the end), or its tail. */
function failures(output: string): string {
  const at = [...output.matchAll(/FAIL/g)].map((m) => m.index ?? 0).slice(0, 3);
  return at.length ? at.map((i) => output.slice(Math.max(0, i - 200), i + 3000)).join('\n...\n') : output.slice(-8000);
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
  for (const { suites, env } of groups()) {
    const envText = Object.keys(env).length ? ` (${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')})` : '';
    test(`${suites.join(', ')} on the emulated device${envText}`, () => {
      const r = runGroup(suites, env);
      const empty = suites.filter((suite) => suiteFiles(suite).length === 0);
      assert.equal(empty, [], `suites that name no test file: ${empty.join(', ')}`);
      // Each file on its own: it ran, ran at least one test, and passed them all.
      const results = fileResults(r.output);
      const files = suites.flatMap(suiteFiles);
      const bad = files.flatMap((f) => {
        const x = results.get(f);
        if (!x) return [`${f} (did not run)`];
        if (x.total === 0) return [`${f} (ran no test)`];
        return x.passed < x.total ? [`${f} (${x.passed} / ${x.total} passed)`] : [];
      });
      assert.equal(bad, [], `on the emulated device${envText}: ${bad.join(', ')}\n${failures(r.output)}`);
      const skips = r.output.split('\n').filter((l) => /\bSKIP\b/.test(l));
      assert.equal(skips, [], `skipped on the emulated device${envText}`);
      assert.is(r.status, 0, `failed on the emulated device${envText} (exit ${r.status}):\n${failures(r.output)}`);
      console.log(`  ${files.length} files${envText}: passed on the emulated device in ${r.seconds.toFixed(1)} s`);
    });
  }
}

test.run();
