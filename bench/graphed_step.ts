/**
 * A training step whose zero-grad, forward and backward replay a CUDA graph
 * (src/tensor/cuda_graph.ts): the first call runs eagerly (the warm-up that allocates gradients
 * and plans), captures, and every call then replays the graph and steps the optimizer. The
 * gradients are zeroed in place inside the graph: one fill per parameter (314 for ResNet-101)
 * would otherwise be that many eager launches per step. For bench/gpu_resnet.ts and
 * bench/gpu_gpt.ts, beside their eager steps.
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
        const zeroForwardBackward = () => {
          optimizer.zeroGrad({ setToNone: false });
          return tidy(forwardBackward);
        };
        graph = captureCudaGraph(zeroForwardBackward, { device: DEV, parameters });
        console.log(`  (CUDA graph: ${graph.nodes} nodes per step)`);
      }
      const loss = graph.replay();
      optimize();
      return loss;
    },
    dispose: () => graph?.dispose(),
  };
}
