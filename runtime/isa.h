// isa.h: run-time dispatch of the hot loops of our own kernels (the GEMMs are OpenBLAS's, which
// picks its kernels at run time; AdamW dispatches by hand, optim/adamw_simd.cpp).
//
// The default build targets the baseline x86-64 ISA, so that one binary runs on every node of a
// cluster (-march=native on a login node makes a binary that dies with SIGILL on older compute
// nodes). A function marked ZT_DISPATCH is compiled three times, for x86-64-v4 (AVX-512),
// x86-64-v3 (AVX2 + FMA) and the baseline, and the loader picks the best the CPU has (GCC's
// target_clones, resolved once at start-up). With -DZT_NATIVE=ON everything is compiled for the
// build machine and ZT_DISPATCH is empty. Loops inlined into a ZT_DISPATCH function are compiled
// with its ISA, so the outer function of a kernel carries it, not its helpers.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && (__GNUC__ >= 12) && \
    !defined(ZT_NATIVE_BUILD)
#define ZT_DISPATCH_ENABLED 1
#define ZT_DISPATCH __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ZT_DISPATCH_ENABLED 0
#define ZT_DISPATCH
#endif
