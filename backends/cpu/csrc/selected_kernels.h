// The kernel sets this process runs (QWEN3CORE_CPU_ISA and the CPU decide, once), for operators
// in other files than linear_op.cpp (moe_op.cpp). Defined in linear_op.cpp, which chooses them.
#pragma once

#include "kernels.h"

namespace qwen3core_cpu {

// Raise a torch error (like qwen3core_cpu::linear does) where the CPU cannot run them.
const KernelSet& selected_kernels();
const A8KernelSet& selected_a8_kernels();

}  // namespace qwen3core_cpu
