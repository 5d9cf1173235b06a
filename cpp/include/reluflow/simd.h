// A small host-only SIMD vector type over intrinsics, for float and double.
//
// `Simd<T>` has one implementation per instruction set: AVX-512 (16 floats / 8 doubles, k-register
// masks), AVX2+FMA (8 / 4, vector masks) and plain scalar code (1 lane). The kernels in
// cpp/src/cpu/risk_grad_{shallow,deep}.cpp are written against this interface only, and CMake compiles
// them once per instruction set (RELUFLOW_SIMD_ISA set per translation unit); cpu/simd_dispatch.cpp
// picks one at import from what the CPU reports (see the note "ISA translation units" below).
//
//   Simd<T>::W                lanes;  reg: the vector; mask: a lane mask; bits: compact mask storage
//   load/store/set1/zero      memory and broadcast (load/store need no alignment)
//   add/sub/mul/max, fma(a,b,c) = a*b+c (fused, explicit: -ffp-contract=off does not touch it)
//   cmp_gt(a,b)               lane mask of a > b (ordered: NaN compares false)
//   mask_add(acc,m,x)         m ? acc + x : acc
//   mask_fma(acc,m,a,b)       m ? acc + a*b : acc
//   select(m,x)               m ? x : 0
//   to_bits/from_bits         mask <-> compact storage (one bit per lane)
//   store_bits/load_bits      the same through memory (AVX-512: kmov m, k directly)
//   hsum(a)                   sum of the lanes, in a fixed order
//   acc_to_double(dst,a,n)    dst[l] += (double)a[l] for l < n (n <= W)
//
// ISA translation units (why a target pragma and a namespace, not -mavx512f on the file):
// a file compiled with -mavx512f also compiles every std:: template and inline header function it
// instantiates (std::vector growth, std::sort, net.h's RF_HD functions, ...) with AVX-512; those are
// weak symbols shared with the other files, and the linker keeps one copy, possibly the AVX-512 one,
// which then crashes the scalar or AVX2 path on a CPU without AVX-512. So the ISA files are compiled
// with the same flags as every other file, include all their headers first, and only then switch the
// instruction set on with RELUFLOW_SIMD_BEGIN (#pragma GCC target): the pragma applies to functions
// defined after it, so shared templates and inline functions keep the baseline instruction set (GCC
// still inlines them into the wider kernels: a callee's ISA may be a subset of its caller's). What
// is defined after the pragma, this header's Simd<T> and the kernels, lives in a namespace named
// after the instruction set (RELUFLOW_ISA_NS: isa_scalar, isa_avx2, isa_avx512), so no two ISA
// files define the same symbol. tools/check_isa_leaks.py checks the object files for wide registers
// outside those namespaces.
#pragma once
#include <cstddef>
#include <cstdint>

#define RELUFLOW_ISA_SCALAR 0
#define RELUFLOW_ISA_AVX2 1
#define RELUFLOW_ISA_AVX512 2

// Without a choice from the build (files other than the ISA kernels), the widest set the flags allow.
#ifndef RELUFLOW_SIMD_ISA
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define RELUFLOW_SIMD_ISA RELUFLOW_ISA_AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define RELUFLOW_SIMD_ISA RELUFLOW_ISA_AVX2
#else
#define RELUFLOW_SIMD_ISA RELUFLOW_ISA_SCALAR
#endif
#endif

// The instruction set of each path: what simd_dispatch.cpp checks the CPU for before choosing it.
// (The target lists are spelled out in each pragma: a pragma's string is not macro-expanded.)
#define RELUFLOW_PRAGMA(x) _Pragma(#x)
#if RELUFLOW_SIMD_ISA == RELUFLOW_ISA_AVX512
#define RELUFLOW_ISA_NS isa_avx512
#if defined(__clang__)
#define RELUFLOW_SIMD_BEGIN                                                                          \
  RELUFLOW_PRAGMA(clang attribute push(                                                              \
      __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512cd,avx2,fma,bmi,bmi2,popcnt"))), \
      apply_to = function))
#else
#define RELUFLOW_SIMD_BEGIN \
  RELUFLOW_PRAGMA(GCC push_options) \
  RELUFLOW_PRAGMA(GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx512cd,avx2,fma,bmi,bmi2,popcnt"))
#endif
#elif RELUFLOW_SIMD_ISA == RELUFLOW_ISA_AVX2
#define RELUFLOW_ISA_NS isa_avx2
#if defined(__clang__)
#define RELUFLOW_SIMD_BEGIN \
  RELUFLOW_PRAGMA(clang attribute push(__attribute__((target("avx2,fma,bmi,bmi2,popcnt"))), apply_to = function))
#else
#define RELUFLOW_SIMD_BEGIN RELUFLOW_PRAGMA(GCC push_options) RELUFLOW_PRAGMA(GCC target("avx2,fma,bmi,bmi2,popcnt"))
#endif
#else
#define RELUFLOW_ISA_NS isa_scalar
#define RELUFLOW_SIMD_BEGIN
#define RELUFLOW_SIMD_END
#endif

#if RELUFLOW_SIMD_ISA != RELUFLOW_ISA_SCALAR
#if defined(__clang__)
#define RELUFLOW_SIMD_END RELUFLOW_PRAGMA(clang attribute pop)
#else
#define RELUFLOW_SIMD_END RELUFLOW_PRAGMA(GCC pop_options)
#endif
// before the pragma: GCC's and clang's intrinsics headers declare every instruction set themselves
#include <immintrin.h>
#endif

RELUFLOW_SIMD_BEGIN
namespace reluflow {
namespace simd {
// inline: the kernels say simd::Simd<T>; the symbols carry the instruction set
inline namespace RELUFLOW_ISA_NS {

template <class T>
struct Simd;

#if RELUFLOW_SIMD_ISA == RELUFLOW_ISA_AVX512
// ------------------------------------------------------------------------------------------------
// AVX-512
constexpr const char* kPath = "avx512";

template <>
struct Simd<float> {
  using value_type = float;
  using reg = __m512;
  using mask = __mmask16;
  using bits = uint16_t;
  static constexpr int W = 16;
  static constexpr int kRegs = 32;
  static inline reg load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, reg a) { _mm512_storeu_ps(p, a); }
  static inline reg set1(float a) { return _mm512_set1_ps(a); }
  static inline reg zero() { return _mm512_setzero_ps(); }
  static inline reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static inline reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static inline reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static inline reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static inline reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static inline mask cmp_gt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static inline reg mask_add(reg acc, mask m, reg x) { return _mm512_mask_add_ps(acc, m, acc, x); }
  static inline reg mask_fma(reg acc, mask m, reg a, reg b) { return _mm512_mask3_fmadd_ps(a, b, acc, m); }
  static inline reg select(mask m, reg x) { return _mm512_maskz_mov_ps(m, x); }
  static inline bits to_bits(mask m) { return static_cast<bits>(m); }
  static inline mask from_bits(bits b) { return static_cast<mask>(b); }
  // kmovw straight between memory and a k register (no trip through a general register). The store is
  // one asm instruction so that GCC's SLP vectorizer cannot merge neighbouring mask stores into a
  // chain of shuffles (it does so with a plain store, and that saturates port 5).
  // The load names its address in a register, not as a memory operand: GCC treats an asm with a memory
  // operand as touching unknown memory and then stops keeping the accumulators of a loop in
  // registers. So the asm is invisible as a memory read: callers must not let it move above the
  // store of the same bits (the shallow kernel reads them in a separate, non-inlined function).
#if defined(__GNUC__)
  static inline void store_bits(bits* p, mask m) { asm("kmovw %1, %0" : "=m"(*p) : "k"(m)); }
  static inline mask load_bits(const bits* p) {
    mask m;
    asm("kmovw (%1), %0" : "=k"(m) : "r"(p));
    return m;
  }
#else
  static inline void store_bits(bits* p, mask m) { _store_mask16(p, m); }
  static inline mask load_bits(const bits* p) { return _load_mask16(const_cast<bits*>(p)); }
#endif
  static inline float hsum(reg a) {
    const __m256 lo = _mm512_castps512_ps256(a);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
  }
  static inline void acc_to_double(double* dst, reg a, int n = W) {
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    if (n >= W) {
      _mm512_storeu_pd(dst, _mm512_add_pd(_mm512_loadu_pd(dst), lo));
      _mm512_storeu_pd(dst + 8, _mm512_add_pd(_mm512_loadu_pd(dst + 8), hi));
    } else {
      const __mmask8 m0 = static_cast<__mmask8>(n >= 8 ? 0xFF : ((1u << n) - 1u));
      const __mmask8 m1 = static_cast<__mmask8>(n <= 8 ? 0 : ((1u << (n - 8)) - 1u));
      _mm512_mask_storeu_pd(dst, m0, _mm512_add_pd(_mm512_maskz_loadu_pd(m0, dst), lo));
      _mm512_mask_storeu_pd(dst + 8, m1, _mm512_add_pd(_mm512_maskz_loadu_pd(m1, dst + 8), hi));
    }
  }
};

template <>
struct Simd<double> {
  using value_type = double;
  using reg = __m512d;
  using mask = __mmask8;
  using bits = uint8_t;
  static constexpr int W = 8;
  static constexpr int kRegs = 32;
  static inline reg load(const double* p) { return _mm512_loadu_pd(p); }
  static inline void store(double* p, reg a) { _mm512_storeu_pd(p, a); }
  static inline reg set1(double a) { return _mm512_set1_pd(a); }
  static inline reg zero() { return _mm512_setzero_pd(); }
  static inline reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static inline reg sub(reg a, reg b) { return _mm512_sub_pd(a, b); }
  static inline reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static inline reg max(reg a, reg b) { return _mm512_max_pd(a, b); }
  static inline reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static inline mask cmp_gt(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
  static inline reg mask_add(reg acc, mask m, reg x) { return _mm512_mask_add_pd(acc, m, acc, x); }
  static inline reg mask_fma(reg acc, mask m, reg a, reg b) { return _mm512_mask3_fmadd_pd(a, b, acc, m); }
  static inline reg select(mask m, reg x) { return _mm512_maskz_mov_pd(m, x); }
  static inline bits to_bits(mask m) { return static_cast<bits>(m); }
  static inline mask from_bits(bits b) { return static_cast<mask>(b); }
#if defined(__GNUC__)  // AVX512DQ is part of this path
  // kmovb directly (see Simd<float>::store_bits / load_bits)
  static inline void store_bits(bits* p, mask m) { asm("kmovb %1, %0" : "=m"(*p) : "k"(m)); }
  static inline mask load_bits(const bits* p) {
    mask m;
    asm("kmovb (%1), %0" : "=k"(m) : "r"(p));
    return m;
  }
#else
  static inline void store_bits(bits* p, mask m) { *p = to_bits(m); }
  static inline mask load_bits(const bits* p) { return from_bits(*p); }
#endif
  static inline double hsum(reg a) {
    __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1));
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    s2 = _mm_add_sd(s2, _mm_unpackhi_pd(s2, s2));
    return _mm_cvtsd_f64(s2);
  }
  static inline void acc_to_double(double* dst, reg a, int n = W) {
    if (n >= W) {
      _mm512_storeu_pd(dst, _mm512_add_pd(_mm512_loadu_pd(dst), a));
    } else {
      const __mmask8 m = static_cast<__mmask8>((1u << n) - 1u);
      _mm512_mask_storeu_pd(dst, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, dst), a));
    }
  }
};

#elif RELUFLOW_SIMD_ISA == RELUFLOW_ISA_AVX2
// ------------------------------------------------------------------------------------------------
// AVX2 + FMA: masks are full vectors (all-ones lanes); compact storage via movemask.
constexpr const char* kPath = "avx2";

template <>
struct Simd<float> {
  using value_type = float;
  using reg = __m256;
  using mask = __m256;
  using bits = uint8_t;
  static constexpr int W = 8;
  static constexpr int kRegs = 16;
  static inline reg load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, reg a) { _mm256_storeu_ps(p, a); }
  static inline reg set1(float a) { return _mm256_set1_ps(a); }
  static inline reg zero() { return _mm256_setzero_ps(); }
  static inline reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static inline reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static inline reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static inline reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static inline reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static inline mask cmp_gt(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static inline reg mask_add(reg acc, mask m, reg x) { return _mm256_add_ps(acc, _mm256_and_ps(m, x)); }
  static inline reg mask_fma(reg acc, mask m, reg a, reg b) {
    return _mm256_blendv_ps(acc, _mm256_fmadd_ps(a, b, acc), m);
  }
  static inline reg select(mask m, reg x) { return _mm256_and_ps(m, x); }
  static inline bits to_bits(mask m) { return static_cast<bits>(_mm256_movemask_ps(m)); }
  static inline void store_bits(bits* p, mask m) { *p = to_bits(m); }
  static inline mask load_bits(const bits* p) { return from_bits(*p); }
  static inline mask from_bits(bits b) {
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i v = _mm256_and_si256(_mm256_set1_epi32(b), sel);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(v, sel));
  }
  static inline float hsum(reg a) {
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
  }
  static inline void acc_to_double(double* dst, reg a, int n = W) {
    if (n >= W) {
      const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(a));
      const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
      _mm256_storeu_pd(dst, _mm256_add_pd(_mm256_loadu_pd(dst), lo));
      _mm256_storeu_pd(dst + 4, _mm256_add_pd(_mm256_loadu_pd(dst + 4), hi));
    } else {
      alignas(32) float t[W];
      _mm256_store_ps(t, a);
      for (int l = 0; l < n; ++l) dst[l] += static_cast<double>(t[l]);
    }
  }
};

template <>
struct Simd<double> {
  using value_type = double;
  using reg = __m256d;
  using mask = __m256d;
  using bits = uint8_t;
  static constexpr int W = 4;
  static constexpr int kRegs = 16;
  static inline reg load(const double* p) { return _mm256_loadu_pd(p); }
  static inline void store(double* p, reg a) { _mm256_storeu_pd(p, a); }
  static inline reg set1(double a) { return _mm256_set1_pd(a); }
  static inline reg zero() { return _mm256_setzero_pd(); }
  static inline reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
  static inline reg sub(reg a, reg b) { return _mm256_sub_pd(a, b); }
  static inline reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
  static inline reg max(reg a, reg b) { return _mm256_max_pd(a, b); }
  static inline reg fma(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
  static inline mask cmp_gt(reg a, reg b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
  static inline reg mask_add(reg acc, mask m, reg x) { return _mm256_add_pd(acc, _mm256_and_pd(m, x)); }
  static inline reg mask_fma(reg acc, mask m, reg a, reg b) {
    return _mm256_blendv_pd(acc, _mm256_fmadd_pd(a, b, acc), m);
  }
  static inline reg select(mask m, reg x) { return _mm256_and_pd(m, x); }
  static inline bits to_bits(mask m) { return static_cast<bits>(_mm256_movemask_pd(m)); }
  static inline void store_bits(bits* p, mask m) { *p = to_bits(m); }
  static inline mask load_bits(const bits* p) { return from_bits(*p); }
  static inline mask from_bits(bits b) {
    const __m256i sel = _mm256_setr_epi64x(1, 2, 4, 8);
    const __m256i v = _mm256_and_si256(_mm256_set1_epi64x(b), sel);
    return _mm256_castsi256_pd(_mm256_cmpeq_epi64(v, sel));
  }
  static inline double hsum(reg a) {
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    s2 = _mm_add_sd(s2, _mm_unpackhi_pd(s2, s2));
    return _mm_cvtsd_f64(s2);
  }
  static inline void acc_to_double(double* dst, reg a, int n = W) {
    if (n >= W) {
      _mm256_storeu_pd(dst, _mm256_add_pd(_mm256_loadu_pd(dst), a));
    } else {
      alignas(32) double t[W];
      _mm256_store_pd(t, a);
      for (int l = 0; l < n; ++l) dst[l] += t[l];
    }
  }
};

#else
// ------------------------------------------------------------------------------------------------
// Scalar: one lane; the same kernels compile to plain loops.
constexpr const char* kPath = "scalar";

template <class T>
struct Simd {
  using value_type = T;
  using reg = T;
  using mask = bool;
  using bits = uint8_t;
  static constexpr int W = 1;
  static constexpr int kRegs = 16;
  static inline reg load(const T* p) { return *p; }
  static inline void store(T* p, reg a) { *p = a; }
  static inline reg set1(T a) { return a; }
  static inline reg zero() { return T(0); }
  static inline reg add(reg a, reg b) { return a + b; }
  static inline reg sub(reg a, reg b) { return a - b; }
  static inline reg mul(reg a, reg b) { return a * b; }
  static inline reg max(reg a, reg b) { return a > b ? a : b; }
  static inline reg fma(reg a, reg b, reg c) { return a * b + c; }
  static inline mask cmp_gt(reg a, reg b) { return a > b; }
  static inline reg mask_add(reg acc, mask m, reg x) { return m ? acc + x : acc; }
  static inline reg mask_fma(reg acc, mask m, reg a, reg b) { return m ? acc + a * b : acc; }
  static inline reg select(mask m, reg x) { return m ? x : T(0); }
  static inline bits to_bits(mask m) { return static_cast<bits>(m); }
  static inline mask from_bits(bits b) { return b != 0; }
  static inline void store_bits(bits* p, mask m) { *p = to_bits(m); }
  static inline mask load_bits(const bits* p) { return from_bits(*p); }
  static inline T hsum(reg a) { return a; }
  static inline void acc_to_double(double* dst, reg a, int n = W) {
    if (n > 0) dst[0] += static_cast<double>(a);
  }
};
#endif

}  // namespace RELUFLOW_ISA_NS
}  // namespace simd
}  // namespace reluflow

RELUFLOW_SIMD_END
