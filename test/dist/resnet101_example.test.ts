// examples/resnet101_zero3.ts (the DeepSpeed ResNet101 ZeRO-3 port) launched as a user would, on 2
// ranks for 2 optimizer steps with --arch resnet18 and a per-rank batch of 2 (synthetic CIFAR-10),
// with the config as written (ZeRO-3, optimizer offloaded to CPU, fp16 with dynamic loss scale:
// the first steps may overflow and be skipped, as DeepSpeed's do). It must print the resolved
// config, one finite loss per step on rank 0, each rank's epoch mean as the original does,
// "Finished Training" on every rank, and each rank's memory report.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, ROOT, runLauncher } from './helpers.ts';

test('the ResNet101 ZeRO-3 example trains 2 steps on 2 ranks (resnet18) with finite losses', async () => {
  const example = `${ROOT}/examples/resnet101_zero3.ts`;
  const r = await runLauncher(['--num_gpus', '2'], '../../../examples/resnet101_zero3.ts', ['--steps', '2', '--arch', 'resnet18', '--batch_size', '2'], {
    timeoutMs: 60_000,
  });
  expectExit(r, 0, example);
  const out = r.stdout;
  assert.match(out, /\[rank 0\] meshtrain config \(resolved\)/);
  assert.match(out, /\[rank 0\] resnet18: 11,181,642 parameters \(f16\), ZeRO stage 3, 2 ranks x batch 2, synthetic CIFAR-10, 12500 steps per epoch/);
  const losses = [...out.matchAll(/^\[rank 0\] \[Epoch 1, step (\d+)\/12500\] loss (\S+)/gm)].map((m) => [Number(m[1]), Number(m[2])]);
  assert.equal(losses.map(([s]) => s), [1, 2], out);
  for (const [, l] of losses) assert.ok(Number.isFinite(l) && l > 0 && l < 10, `loss ${l}`);
  for (const rank of [0, 1]) {
    const mean = new RegExp(`^\\[rank ${rank}\\] \\[Epoch 1\\] Loss: (\\S+) \\(mean of the first 2 batches\\)$`, 'm').exec(out);
    assert.ok(mean && Number.isFinite(Number(mean[1])), `rank ${rank} epoch mean in:\n${out}`);
    assert.match(out, new RegExp(`^\\[rank ${rank}\\] Finished Training$`, 'm'));
  }
  const rank0 = (losses[0][1] + losses[1][1]) / 2;
  const printed = Number(/^\[rank 0\] \[Epoch 1\] Loss: (\S+)/m.exec(out)?.[1]);
  assert.ok(Math.abs(printed - rank0) < 1e-3, `rank 0's epoch mean ${printed} vs its step losses' ${rank0}`);
  for (const rank of [0, 1]) assert.match(out, new RegExp(`^\\[rank ${rank}\\] memory, rank ${rank} \\(ZeRO stage 3`, 'm'));
});

test.run();
