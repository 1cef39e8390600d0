/**
 * A training step replayed as one CUDA graph (src/tensor/cuda_graph.ts): forward, backward and the
 * optimizer step. The first call runs eagerly (the warm-up: plans, workspaces, the optimizer's
 * state), then the gradients are set to none and the graph captured, so that each replay
 * overwrites them; every later call is one replay (the optimizer's scalars written first, then the
 * graph: two device ops). Zeroing in place instead would cost a fill per parameter and make the
 * backward add (314 of each for ResNet-101). For bench/gpu_resnet.ts and bench/gpu_gpt.ts, beside
 * their eager steps.
 */
import { type CudaGraph, captureCudaGraph, type Tensor, tidy } from '../src/index.ts';
import { DEV } from './gpu_timing.ts';

interface Stepper {
  step(): void;
  zeroGrad(opts: { setToNone: boolean }): void;
}

/** `forwardBackward` reads only static inputs and returns the loss; `step()` returns it after the replay (values not read). */
export function graphedStep(forwardBackward: () => Tensor, optimizer: Stepper, parameters: Tensor[]): { step(): Tensor; dispose(): void } {
  let graph: CudaGraph<Tensor> | null = null;
  const optimize = () => tidy(() => optimizer.step());
  return {
    step: () => {
      if (!graph) {
        tidy(() => {
          forwardBackward();
        });
        optimize();
        // No gradients at the capture: its backward creates them (adopting each first gradient)
        // and every replay overwrites them, so nothing zeroes them between steps.
        optimizer.zeroGrad({ setToNone: true });
        graph = captureCudaGraph(
          () => {
            const loss = tidy(forwardBackward);
            optimize();
            return loss;
          },
          { device: DEV, parameters },
        );
        console.log(`  (CUDA graph: ${graph.nodes} nodes per step, the optimizer's included)`);
      }
      return graph.replay();
    },
    dispose: () => graph?.dispose(),
  };
}
