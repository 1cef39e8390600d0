// Emulated device (test tool): stands in for NVIDIA's header in the MESHTRAIN_CUDA_EMU build.
#pragma once
#include "../cudart.h"
#include "../half.h"
