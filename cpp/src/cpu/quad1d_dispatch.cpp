// The exact 1-D quadrature's public entry points (quad1d_cpu.h): each calls the instruction-set path
// that runs (simd_dispatch.h), compiled from quad1d_cpu.cpp once per path.
#include "cpu/quad1d_cpu.h"
#include "cpu/simd_dispatch.h"

namespace reluflow {

namespace {

// f(path's namespace tag): the compiled path that runs (set_simd_path accepts compiled paths only).
template <class Scalar, class Avx2, class Avx512>
auto on_path(Scalar scalar, Avx2 avx2, Avx512 avx512) {
  switch (active_simd_path()) {
#ifdef RELUFLOW_HAVE_ISA_AVX512
    case SimdPath::Avx512:
      return avx512();
#endif
#ifdef RELUFLOW_HAVE_ISA_AVX2
    case SimdPath::Avx2:
      return avx2();
#endif
    default:
      (void)avx2;
      (void)avx512;
      return scalar();
  }
}

}  // namespace

#define RELUFLOW_ON_PATH(call)                                                                       \
  on_path([&] { return detail::isa_scalar::call; }, [&] { return detail::isa_avx2::call; },          \
          [&] { return detail::isa_avx512::call; })

void kink_partition_1d(const Layout& lay, const double* theta, double lo, double hi, std::vector<double>& out) {
  RELUFLOW_ON_PATH(kink_partition_1d(lay, theta, lo, hi, out));
}

void quad1d_nodes(const ProblemSpec& prob, const double* theta, const Quad1DSpec& s, std::vector<double>& x,
                  std::vector<double>& w, std::vector<double>& y) {
  RELUFLOW_ON_PATH(quad1d_nodes(prob, theta, s, x, w, y));
}

void quad1d_nodes_batch(const ProblemSpec& prob, const double* theta, int64_t K, const Quad1DSpec& s,
                        Quad1DNodes& out) {
  RELUFLOW_ON_PATH(quad1d_nodes_batch(prob, theta, K, s, out));
}

template <class T>
void quad1d_risk_and_grad_cpu(const ProblemSpec& prob, const T* theta, int64_t K, const Quad1DSpec& s,
                              double* risk, double* grad) {
  RELUFLOW_ON_PATH(quad1d_risk_and_grad_cpu<T>(prob, theta, K, s, risk, grad));
}

#undef RELUFLOW_ON_PATH

template void quad1d_risk_and_grad_cpu<float>(const ProblemSpec&, const float*, int64_t, const Quad1DSpec&,
                                              double*, double*);
template void quad1d_risk_and_grad_cpu<double>(const ProblemSpec&, const double*, int64_t, const Quad1DSpec&,
                                               double*, double*);

}  // namespace reluflow
