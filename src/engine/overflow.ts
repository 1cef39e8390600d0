/**
 * Gradient overflow check for mixed precision (fp16 and bf16): sum |x| in double over every
 * tensor, which is non-finite exactly when some element is inf or NaN (a sum of finite 16/32-bit
 * values cannot overflow a double). The sums accumulate on the tensors' device (DeviceSums) and
 * are read once, not once per tensor; across ranks the one f64 is all-reduced before that read.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { DeviceSums, withDeviceSums } from '../optim/device_sums.ts';
import type { Device } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';

const FLOAT_DTYPES = new Set(['f32', 'f64', 'bf16', 'f16']);

/** The float tensors with elements, checked; null, undefined, disposed and integer entries are skipped. */
function checked(tensors: Iterable<Tensor | null | undefined>, where: string): Tensor[] {
  const out: Tensor[] = [];
  let i = 0;
  for (const t of tensors) {
    if (t !== null && t !== undefined && !(t instanceof Tensor)) throw new Error(`${where}: tensors[${i}] is not a Tensor`);
    i++;
    if (t && !t.disposed && t.numel > 0 && FLOAT_DTYPES.has(t.dtype)) out.push(t);
  }
  return out;
}

/**
 * True when any element of any tensor is inf or NaN; null, undefined and disposed entries are
 * skipped (parameters without gradients), as are integer tensors. One host read per device.
 * @example
 * const overflow = hasOverflow(model.parameters().map((p) => p.grad));
 */
export function hasOverflow(tensors: Iterable<Tensor | null | undefined>): boolean {
  const list = checked(tensors, 'hasOverflow');
  const devices = [...new Set(list.map((t) => t.device))];
  return devices.some((device) =>
    withDeviceSums(device, 1, (s) => {
      for (const t of list) if (t.device === device) s.add(t, 1);
      return !Number.isFinite(s.read()[0]);
    }),
  );
}

/**
 * hasOverflow over this rank's tensors and every rank of `groups` (a collective: call on every
 * rank): the sums go into one f64 on `device` (every tensor must be there), all-reduced over each
 * group, read once. `device` defaults to the first tensor's, else 'cpu'.
 * @example
 * if (hasOverflowAcross(partitionGrads, [dpGroup], 'cuda:0')) skipStep();
 */
export function hasOverflowAcross(tensors: Iterable<Tensor | null | undefined>, groups: (ProcessGroup | null)[], device?: Device): boolean {
  const list = checked(tensors, 'hasOverflowAcross');
  const sums = new DeviceSums(device ?? list[0]?.device ?? 'cpu');
  try {
    for (const t of list) sums.add(t, 1);
    sums.allReduce(groups);
    return !Number.isFinite(sums.read()[0]);
  } finally {
    sums.dispose();
  }
}
