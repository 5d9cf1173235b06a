// The SIMD path choice (see simd_dispatch.h). The kernels themselves are in risk_grad_{shallow,deep}.cpp,
// one copy per instruction set; this file is compiled with the baseline flags like every other file.
#include "cpu/simd_dispatch.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace reluflow {
namespace {

constexpr const char* kNames[] = {"scalar", "avx2", "avx512"};
constexpr int kNumPaths = 3;

bool compiled(int p) {
  switch (static_cast<SimdPath>(p)) {
    case SimdPath::Scalar:
      return true;
    case SimdPath::Avx2:
#ifdef RELUFLOW_HAVE_ISA_AVX2
      return true;
#else
      return false;
#endif
    case SimdPath::Avx512:
#ifdef RELUFLOW_HAVE_ISA_AVX512
      return true;
#else
      return false;
#endif
  }
  return false;
}

// Paths turned off by RELUFLOW_SIMD_DISABLE (bit p: path p), as if the CPU lacked them: to check on a
// wide machine what a narrower one does (like numpy's NPY_DISABLE_CPU_FEATURES). Set once at import.
std::atomic<int> g_disabled{0};

// The instruction sets each path was compiled for (simd.h's target pragmas). __builtin_cpu_supports
// also checks that the OS saves the wide registers (XGETBV), not only the CPUID bits.
bool cpu_reports(int p) {
  switch (static_cast<SimdPath>(p)) {
    case SimdPath::Scalar:
      return true;
    case SimdPath::Avx2:
    case SimdPath::Avx512: {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_cpu_init();
      const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                        __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
                        __builtin_cpu_supports("popcnt");
      if (static_cast<SimdPath>(p) == SimdPath::Avx2) return avx2;
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512cd");
#else
      return false;
#endif
    }
  }
  return false;
}

bool cpu_runs(int p) { return cpu_reports(p) && !(g_disabled.load() & (1 << p)); }

int widest_supported() {
  for (int p = kNumPaths - 1; p > 0; --p)
    if (compiled(p) && cpu_runs(p)) return p;
  return 0;
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// -1: not chosen yet (the first kernel call or simd_path() chooses "auto")
std::atomic<int> g_path{-1};

}  // namespace

std::vector<std::string> simd_paths_compiled() {
  std::vector<std::string> v;
  for (int p = 0; p < kNumPaths; ++p)
    if (compiled(p)) v.push_back(kNames[p]);
  return v;
}

std::vector<std::string> simd_paths_supported() {
  std::vector<std::string> v;
  for (int p = 0; p < kNumPaths; ++p)
    if (compiled(p) && cpu_runs(p)) v.push_back(kNames[p]);
  return v;
}

SimdPath active_simd_path() {
  int p = g_path.load(std::memory_order_relaxed);
  if (p < 0) {
    int unset = -1;
    const int w = widest_supported();
    p = g_path.compare_exchange_strong(unset, w) ? w : unset;
  }
  return static_cast<SimdPath>(p);
}

std::string simd_path() { return kNames[static_cast<int>(active_simd_path())]; }

void set_simd_path(const std::string& name) {
  if (name == "auto") {
    g_path.store(widest_supported());
    return;
  }
  int p = -1;
  for (int q = 0; q < kNumPaths; ++q)
    if (name == kNames[q]) p = q;
  if (p < 0)
    throw std::invalid_argument("simd path: expected one of 'auto', 'scalar', 'avx2', 'avx512', got '" + name +
                                "'");
  if (!compiled(p))
    throw std::invalid_argument("simd path: '" + name + "' is not compiled into this build (compiled: " +
                                join(simd_paths_compiled()) + ")");
  if (!cpu_runs(p))
    throw std::invalid_argument(
        "simd path: '" + name + "' does not run here: it needs " +
        (p == 2 ? std::string("AVX-512 F/DQ/BW/VL/CD") : std::string("AVX2, FMA, BMI1/2")) +
        (cpu_reports(p) ? ", which RELUFLOW_SIMD_DISABLE turns off" : ", which this CPU does not report") +
        "; it runs: " + join(simd_paths_supported()));
  g_path.store(p);
}

void set_simd_path_from_env() {
  if (const char* d = std::getenv("RELUFLOW_SIMD_DISABLE")) {
    int mask = 0;
    std::string list(d);
    for (size_t a = 0; a <= list.size();) {
      size_t b = list.find(',', a);
      if (b == std::string::npos) b = list.size();
      const std::string name = list.substr(a, b - a);
      a = b + 1;
      if (name.empty()) continue;
      int p = -1;
      for (int q = 1; q < kNumPaths; ++q)
        if (name == kNames[q]) p = q;
      if (p < 0)
        throw std::invalid_argument("RELUFLOW_SIMD_DISABLE=" + list + ": expected a comma-separated list of " +
                                    "'avx2', 'avx512' (the scalar path always runs), got '" + name + "'");
      mask |= 1 << p;
    }
    g_disabled.store(mask);
    g_path.store(-1);  // the automatic choice again, among the paths left
  }
  const char* v = std::getenv("RELUFLOW_SIMD");
  if (v == nullptr || *v == '\0') return;
  try {
    set_simd_path(v);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("RELUFLOW_SIMD=") + v + ": " + e.what());
  }
}

}  // namespace reluflow
