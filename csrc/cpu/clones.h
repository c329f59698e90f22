// gcc on x86-64 Linux: compile a function also for AVX2 and pick the version at load time, so
// the wheel stays baseline x86-64. "avx2" does not enable FMA, so both versions round the same
// and results do not depend on the CPU.
#pragma once
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FL_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FL_CPU_CLONES
#endif
