// Which compiled SIMD path runs the risk/gradient kernels: chosen once at import from what the CPU
// reports (the widest one it runs), or forced by RELUFLOW_SIMD / set_simd_path for tests and benchmarks.
// The choice is read once per call, at the kernel's construction (risk_grad_cpu.cpp): inner loops
// never see it.
#pragma once
#include <string>
#include <vector>

namespace reluflow {

enum class SimdPath : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// Names of the paths compiled into this build / compiled and runnable on this CPU (narrow to wide).
std::vector<std::string> simd_paths_compiled();
std::vector<std::string> simd_paths_supported();
// The path that runs ("scalar", "avx2", "avx512").
std::string simd_path();
SimdPath active_simd_path();
// "auto": the widest supported path; otherwise that path, refused (std::invalid_argument naming the
// choices) when unknown, not compiled, or not runnable on this CPU.
void set_simd_path(const std::string& name);
// At import: RELUFLOW_SIMD_DISABLE (comma-separated paths treated as not runnable: "avx512" shows on an
// AVX-512 machine what an AVX2 one runs), then RELUFLOW_SIMD (unset or empty: "auto"); errors name the
// variable.
void set_simd_path_from_env();

}  // namespace reluflow
