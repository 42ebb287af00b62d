# Shared by the layout benches (sourced): the bench shape, a temporary directory removed at exit,
# and the two baselines each layout is compared with in the same run.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
SHAPE="--layers 4 --model-dim 256 --heads 4 --ffn-dim 688 --experts 8 --top-k 2 --shared-experts 1 --dense-layers 1 --expert-ffn-dim 256 --seq-len 128"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# baselines ZT TRAIN_FLAGS: one process (2 BLAS threads, --grad-accum 2) into $tmp/one.jsonl and
# dp 2 (mpirun -np 2) into $tmp/dp2.jsonl; afterwards one thread per process is exported.
baselines() {
  local zt=$1 flags=$2
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$zt" train $flags --grad-accum 2 --metrics "$tmp/one.jsonl" >/dev/null
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
  # shellcheck disable=SC2086
  mpirun -np 2 "$zt" train $flags --metrics "$tmp/dp2.jsonl" >/dev/null
}
