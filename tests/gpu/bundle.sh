#!/usr/bin/env bash
# bundle.sh: the CUDA binaries built here, with the shared libraries they need that a GPU machine
# may lack, in one folder the device tool can carry (its limit is 64 MiB for the whole tree).
# The GPU machine lent to sessions has the driver, nvcc, cuBLAS and NCCL but, as last seen, no
# Open MPI, HDF5, OpenBLAS, Boost or GoogleTest: tests/gpu/run_gpu_checks.sh finds gpu-bundle/ in
# the repository root and runs these instead of building. One-process runs only (zerotrain
# initialises MPI only under a launcher, so libmpi is loaded but never started), and Open MPI's
# mpirun with its plugins for a 2-rank run on the one GPU.
# usage: tests/gpu/bundle.sh [CUDA_BUILD_DIR]   (default build-cuda; built first if needed)
# Leaves gpu-bundle/bundle.tar.xz (bin/, lib/, mpi/ and data/ (a prepared corpus), about 20 MB; 70 MB unpacked, over the carry
# limit) and gpu-bundle/BUNDLE (what it holds), gitignored; prints its size.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build-cuda}
cmake -S . -B "$dir" -DZT_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build "$dir" -j"$(nproc)" --target zerotrain zt_cuda_tests >/dev/null
rm -rf gpu-bundle
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p gpu-bundle "$work/bin" "$work/lib"
cp "$dir/launch/zerotrain" "$dir/tests/zt_cuda_tests" "$work/bin/"
# Every library the binaries load, except the C runtime and CUDA's own (the GPU machine's
# driver and toolkit provide those, in the versions that match its driver).
skip='^(libc|libm|libdl|libpthread|librt|ld-linux.*|libcuda|libcudart|libcublas|libcublasLt|libnccl)\.so'
# Open MPI's launcher with its plugins and PMIx's, in Debian's layout under mpi/usr (relocated on
# the GPU machine with OPAL_PREFIX; run_gpu_checks.sh sets it), for the 2-rank run.
m=/usr/lib/x86_64-linux-gnu
mkdir -p "$work/mpi/usr/bin" "$work/mpi/usr/lib/x86_64-linux-gnu" "$work/mpi/usr/share"
cp -L /usr/bin/orterun "$work/mpi/usr/bin/mpirun"
cp -L /usr/bin/orted "$work/mpi/usr/bin/"
cp -rL "$m/openmpi" "$m/pmix2" "$work/mpi/usr/lib/x86_64-linux-gnu/"
cp -r /usr/share/openmpi "$work/mpi/usr/share/"
rm -rf "$work/mpi/usr/lib/x86_64-linux-gnu/"{openmpi,pmix2}/include
find "$work/mpi" -name '*.a' -delete
for b in "$work"/bin/* "$work"/mpi/usr/bin/* $(find "$work/mpi" -name '*.so*' -type f); do
  ldd "$b" 2>/dev/null | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  name=$(basename "$lib")
  [[ $name =~ $skip ]] && continue
  # in mpi/ already (libpmix must load from there: it finds its plugins next to itself)
  [[ -e $m/openmpi/lib/$name || -e $m/pmix2/lib/$name ]] && continue
  cp -L "$lib" "$work/lib/$name"
done
# The default corpus's Chinese part (4 MB of tokens) for the training checks.
mkdir -p "$work/src"
cp /usr/share/games/fortunes/{tang300,song100,chinese} "$work/src/"
"$work/bin/zerotrain" prepare --input "$work/src" --output "$work/data" >/dev/null
tar -cJf gpu-bundle/bundle.tar.xz -C "$work" bin lib data mpi
{
  echo "built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
  echo "cuda $(nvcc --version | grep -o 'release [0-9.]*'), arch 90"
  echo "binaries: $(ls "$work/bin" | tr '\n' ' ')"
  echo "libraries: $(ls "$work/lib" | tr '\n' ' ')"
} >gpu-bundle/BUNDLE
cat gpu-bundle/BUNDLE
echo "gpu-bundle: $(du -sb gpu-bundle | cut -f1) bytes (the device tool carries at most 64 MiB with the tree)"
