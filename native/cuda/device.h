// CUDA availability. Compiled only when nvcc is found; every CUDA error means "no CUDA here"
// (a machine without a GPU reports cudaErrorInsufficientDriver, not "no device").
#pragma once
#include <string>

namespace mt {
int cudaDeviceCountOrZero(std::string* why);
}
