// The vector field of a run: node source + kernel choice + tangent projection (see field_cpu.h).
#include "cpu/field_cpu.h"

#include "reluflow/manifold.h"
#include "reluflow/sweep1d.h"
#include "cpu/risk_grad_cpu.h"
#include "cpu/sampling_cpu.h"

namespace reluflow {

template <class T>
Field<T>::Field(const FieldSpec& spec) : s_(spec) {
  const int d = s_.problem.lay.widths[0], od = s_.problem.lay.widths[s_.problem.lay.num_layers];
  if (s_.source == kFieldResample) {
    xb_.resize(static_cast<size_t>(s_.n * d));
    yb_.resize(static_cast<size_t>(s_.n * od));
    wb_.assign(static_cast<size_t>(s_.n), 1.0 / static_cast<double>(s_.n));
  }
}

template <class T>
void Field<T>::draw(int64_t step) {
  if (drawn_ == step) return;
  const int d = s_.problem.lay.widths[0], od = s_.problem.lay.widths[s_.problem.lay.num_layers];
  mc_nodes_cpu(s_.seed, static_cast<uint32_t>(step), s_.n, s_.problem.input, xb_.data());
  if (s_.target_fn) {
    s_.target_fn(xb_.data(), s_.n, yb_.data());
  } else {
    for (int64_t j = 0; j < s_.n; ++j) target_eval(s_.problem.target, xb_.data() + j * d, yb_.data() + j * od);
  }
  drawn_ = step;
}

template <class T>
void Field<T>::eval(const T* theta, int64_t Kc, int64_t step, double* risk, double* grad) {
  const int64_t P = s_.problem.lay.num_params;
  const int od = s_.problem.lay.widths[s_.problem.lay.num_layers];
  const double *x = s_.x, *w = s_.w, *y = s_.y;
  int64_t N = s_.N;
  if (s_.source == kFieldResample) {
    draw(step);
    x = xb_.data();
    w = wb_.data();
    y = yb_.data();
    N = s_.n;
  }
  // the sweeps work on float64 parameters (as their Python entry points do)
  const double* th64 = nullptr;
  if (s_.source == kFieldExactShallow1D || s_.sweep) {
    if (sizeof(T) == sizeof(double)) {
      th64 = reinterpret_cast<const double*>(theta);
    } else {
      th64_.resize(static_cast<size_t>(Kc * P));
      for (int64_t q = 0; q < Kc * P; ++q) th64_[q] = static_cast<double>(theta[q]);
      th64 = th64_.data();
    }
  }
  if (s_.source == kFieldQuad1D) {
    quad1d_risk_and_grad_cpu<T>(s_.problem, theta, Kc, s_.quad, risk, grad);
  } else if (s_.source == kFieldExactShallow1D) {
    const int64_t H = s_.problem.lay.widths[1];
    const ProblemSpec& pr = s_.problem;
    shallow1d_exact_cpu(th64, Kc, H, od, pr.lo, pr.hi, pr.target_pieces, pr.density, risk, grad);
  } else if (s_.sweep) {
    shallow1d_points_cpu(th64, Kc, s_.problem.lay.widths[1], od, N, x, w, y, risk, grad);
  } else {
    RGProblem p;
    p.lay = s_.problem.lay;
    p.K = Kc;
    p.f32 = sizeof(T) == 4;
    p.N = N;
    p.theta = theta;
    p.x = x;
    p.w = w;
    p.y = y;
    risk_and_grad_cpu(p, risk, grad);
  }
  ++evaluations;
  if (s_.normalized)
    for (int64_t k = 0; k < Kc; ++k) project_tangent(s_.problem.lay, theta + k * P, grad + k * P);
  if (s_.frozen)
    for (int64_t k = 0; k < Kc; ++k)
      for (int64_t q = 0; q < P; ++q)
        if (s_.frozen[q]) grad[k * P + q] = 0.0;
}

template class Field<float>;
template class Field<double>;

}  // namespace reluflow
