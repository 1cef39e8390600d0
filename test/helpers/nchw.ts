/** Layout helpers for image-op tests. */
import { permute, type Tensor, tensor } from '../../src/index.ts';

/** A channels-last copy of an NCHW tensor: the same logical values in NHWC memory. */
export function toChannelsLast(x: Tensor): Tensor {
  const [N, C, H, W] = x.shape;
  const nhwc = tensor(permute(x, [0, 2, 3, 1]).toList(), { shape: [N, H, W, C], dtype: x.dtype, device: x.device });
  return permute(nhwc, [0, 3, 1, 2]);
}
