/** Element types. The codes match native/tensor/dtype.h. */
export type DType = 'f32' | 'f64' | 'bf16' | 'f16' | 'i32' | 'i64';

export const DTYPES: readonly DType[] = ['f32', 'f64', 'bf16', 'f16', 'i32', 'i64'];

const CODES: Record<DType, number> = { f32: 0, f64: 1, bf16: 2, f16: 3, i32: 4, i64: 5 };
const SIZES: Record<DType, number> = { f32: 4, f64: 8, bf16: 2, f16: 2, i32: 4, i64: 8 };

export function dtypeCode(d: DType): number {
  return CODES[d];
}

export function itemSize(d: DType): number {
  return SIZES[d];
}

export function isFloat(d: DType): boolean {
  return d === 'f32' || d === 'f64' || d === 'bf16' || d === 'f16';
}

export function checkDType(d: unknown, where: string): DType {
  if (typeof d === 'string' && d in CODES) return d as DType;
  throw new Error(`${where}: unknown dtype ${JSON.stringify(d)} (expected one of ${DTYPES.join(', ')})`);
}
