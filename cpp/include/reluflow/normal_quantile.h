// The standard normal quantile Phi^{-1}(u) for the Gaussian sampler (dists.h), host and device
// (RF_HD), with the same float64 operations in the same order as python/reluflow/_normal.py, so the
// samples of numpy, the CPU and the GPU are bitwise equal (with -ffp-contract=off on the host and
// --fmad=false in CUDA: an FMA rounds once where numpy rounds twice).
//
// * portable_log: fdlibm's __ieee754_log (Sun, 1993), error below 1 ulp. Only +, -, *, / (correctly
//   rounded in IEEE 754) and integer operations on the bits of the double, so it is the same double
//   everywhere; std::log and CUDA's log are not specified to the last bit and differ between libraries.
// * normal_quantile: Wichura's AS 241 (PPND16, Applied Statistics 37, 1988): a rational function in
//   the centre |u - 1/2| <= 0.425, and of r = sqrt(-log(min(u, 1 - u))) in the tails; sqrt is
//   correctly rounded on the host and on the GPU (double precision).
// Nothing here may be rewritten into an algebraically equal form: that changes the rounding.
#pragma once
#include <stdint.h>
#include <string.h>

#include <cmath>

#include "rf_hd.h"

namespace reluflow {

RF_HD uint64_t f64_to_bits(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t b;
  memcpy(&b, &x, sizeof b);
  return b;
#endif
}

RF_HD double bits_to_f64(uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(b));
#else
  double x;
  memcpy(&x, &b, sizeof x);
  return x;
#endif
}

// Natural logarithm (fdlibm e_log.c): x = 2^k (1 + f) with sqrt(2)/2 <= 1 + f < sqrt(2) from the bits,
// then log(1 + f) = f - hfsq + s (hfsq + R(z)), s = f / (2 + f), z = s^2.
RF_HD double portable_log(double x) {
  const double ln2_hi = 6.93147180369123816490e-01;  // 3fe62e42 fee00000
  const double ln2_lo = 1.90821492927058770002e-10;  // 3dea39ef 35793c76
  const double two54 = 1.80143985094819840000e+16;   // 43500000 00000000
  const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01, Lg3 = 2.857142874366239149e-01,
               Lg4 = 2.222219843214978396e-01, Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
               Lg7 = 1.479819860511658591e-01;
  uint64_t bits = f64_to_bits(x);
  int32_t hx = static_cast<int32_t>(static_cast<uint32_t>(bits >> 32));
  const uint32_t lx = static_cast<uint32_t>(bits);
  int32_t k = 0;
  if (hx < 0x00100000) {                                                       // x < 2^-1022
    if (((hx & 0x7fffffff) | lx) == 0) return -bits_to_f64(0x7ff0000000000000ULL);  // log(+-0) = -inf
    if (hx < 0) return bits_to_f64(0x7ff8000000000000ULL);                    // log(-x) = NaN
    k -= 54;                                                                   // subnormal: scale up
    x *= two54;
    bits = f64_to_bits(x);
    hx = static_cast<int32_t>(static_cast<uint32_t>(bits >> 32));
  }
  if (hx >= 0x7ff00000) return x + x;  // inf or NaN
  k += (hx >> 20) - 1023;
  hx &= 0x000fffff;
  const int32_t i = (hx + 0x95f64) & 0x100000;
  // normalize x or x/2: the mantissa with the exponent of 1 (or of 1/2 when it is >= sqrt(2))
  bits = (static_cast<uint64_t>(static_cast<uint32_t>(hx | (i ^ 0x3ff00000))) << 32) | (bits & 0xffffffffULL);
  x = bits_to_f64(bits);
  k += (i >> 20);
  const double f = x - 1.0;
  const double dk = static_cast<double>(k);
  if ((0x000fffff & (2 + hx)) < 3) {  // |f| < 2^-20
    if (f == 0.0) return k == 0 ? 0.0 : dk * ln2_hi + dk * ln2_lo;
    const double R = f * f * (0.5 - 0.33333333333333333 * f);
    return k == 0 ? f - R : dk * ln2_hi - ((R - dk * ln2_lo) - f);
  }
  const double s = f / (2.0 + f);
  const double z = s * s;
  const double w = z * z;
  const double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
  const double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
  const double R = t2 + t1;
  if (((hx - 0x6147a) | (0x6b851 - hx)) > 0) {
    const double hfsq = 0.5 * f * f;
    return k == 0 ? f - (hfsq - s * (hfsq + R)) : dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
  }
  return k == 0 ? f - s * (f - R) : dk * ln2_hi - ((s * (f - R) - dk * ln2_lo) - f);
}

// ((c7 r + c6) r + ... + c1) r + c0: Horner from the highest coefficient, as AS 241 writes it.
RF_HD double as241_poly(const double* c, double r) {
  double v = c[7] * r + c[6];
  for (int p = 5; p >= 0; --p) v = v * r + c[p];
  return v;
}

// Phi^{-1}(u), u in (0, 1) (the samplers' uniforms are strictly inside); u <= 0: -inf, u >= 1: +inf.
RF_HD double normal_quantile(double u) {
  const double a[8] = {3.3871328727963666080e0,  1.3314166789178437745e+2, 1.9715909503065514427e+3,
                       1.3731693765509461125e+4, 4.5921953931549871457e+4, 6.7265770927008700853e+4,
                       3.3430575583588128105e+4, 2.5090809287301226727e+3};
  const double b[8] = {1.0,
                       4.2313330701600911252e+1, 6.8718700749205790830e+2, 5.3941960214247511077e+3,
                       2.1213794301586595867e+4, 3.9307895800092710610e+4, 2.8729085735721942674e+4,
                       5.2264952788528545610e+3};
  const double q = u - 0.5;
  if ((q < 0.0 ? -q : q) <= 0.425) {
    const double r = 0.180625 - q * q;
    return q * as241_poly(a, r) / as241_poly(b, r);
  }
  if (!(u > 0.0 && u < 1.0)) {
    if (u <= 0.0) return -bits_to_f64(0x7ff0000000000000ULL);
    if (u >= 1.0) return bits_to_f64(0x7ff0000000000000ULL);
    return bits_to_f64(0x7ff8000000000000ULL);  // NaN
  }
  double r = q < 0.0 ? u : 1.0 - u;  // 1 - u is exact for u >= 1/2
  r = sqrt(-portable_log(r));
  double val;
  if (r <= 5.0) {
    const double c[8] = {1.42343711074968357734e0,  4.63033784615654529590e0,  5.76949722146069140550e0,
                         3.64784832476320460504e0,  1.27045825245236838258e0,  2.41780725177450611770e-1,
                         2.27238449892691845833e-2, 7.74545014278341407640e-4};
    const double d[8] = {1.0,
                         2.05319162663775882187e0,  1.67638483018380384940e0,  6.89767334985100004550e-1,
                         1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4,
                         1.05075007164441684324e-9};
    r = r - 1.6;
    val = as241_poly(c, r) / as241_poly(d, r);
  } else {
    const double e[8] = {6.65790464350110377720e0,  5.46378491116411436990e0,  1.78482653991729133580e0,
                         2.96560571828504891230e-1, 2.65321895265761230930e-2, 1.24266094738807843860e-3,
                         2.71155556874348757815e-5, 2.01033439929228813265e-7};
    const double f[8] = {1.0,
                         5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
                         7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7,
                         2.04426310338993978564e-15};
    r = r - 5.0;
    val = as241_poly(e, r) / as241_poly(f, r);
  }
  return q < 0.0 ? -val : val;
}

}  // namespace reluflow
