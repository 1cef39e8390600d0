// A kernel that keeps the compute stream busy for a while: tests use it to prove that a
// collective waits for the compute stream, and to hold an operation past its timeout.
#pragma once
#if defined(MESHTRAIN_CUDA) && !defined(MESHTRAIN_CUDA_EMU)

namespace mt {
// Queues on cuda:dev's compute stream one thread that spins for `microseconds` (device clock).
void cudaSpin(int dev, double microseconds);
}  // namespace mt
#endif
