// RF_HD marks a function compiled for both host (the OpenMP loops) and device (the CUDA kernels):
// the per-sample and per-neuron math is written once, in headers, and only the loops differ.
#pragma once
#if defined(__CUDACC__)
#define RF_HD __host__ __device__ __forceinline__
#else
#define RF_HD inline
#endif
