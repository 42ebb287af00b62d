#!/usr/bin/env bash
# Two hosts without a cluster: two network namespaces on this machine joined by a veth pair (test
# addresses 10.213.N.1 and .2), each with its own hostname (UTS namespace) and its own node-local
# directory (a mount namespace binds a per-host directory over the same path). mpirun -np 4 runs
# 2 ranks on each over TCP only (btl tcp,self; Open MPI's rsh agent is a script around
# `ip netns exec`). Checked: the losses equal the one-host run's bit for bit; the metrics head
# places ranks 0-1 on one host and 2-3 on the other, local ranks 0,1 on each, each rank with its
# host's share of the cores; each host's --nvme-dir holds only its own ranks' shard files.
source "$(dirname "$0")/lib.sh"
if [[ $(id -u) -ne 0 ]]; then echo "SKIP: network namespaces need root"; exit 77; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PATH=$PATH:/usr/sbin
unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS  # the per-host default is part of what is checked
id=$$
net=10.213.$((id % 250 + 1))
H=(zt-h0-$id zt-h1-$id)
LOCAL=/tmp/zt-nodelocal-$id  # the node-local path every rank names; each host sees its own
cleanup() {
  ip netns del "${H[0]}" 2>/dev/null || true
  ip netns del "${H[1]}" 2>/dev/null || true
  rmdir "$LOCAL" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "${H[0]}" && ip netns add "${H[1]}" || fail "ip netns add failed"
ip link add "zta$id" type veth peer name "ztb$id" || fail "ip link add veth failed"
ip link set "zta$id" netns "${H[0]}" && ip link set "ztb$id" netns "${H[1]}"
for i in 0 1; do
  dev=$([[ $i == 0 ]] && echo "zta$id" || echo "ztb$id")
  ip -n "${H[$i]}" link set lo up
  ip -n "${H[$i]}" addr add "$net.$((i + 1))/24" dev "$dev"
  ip -n "${H[$i]}" link set "$dev" up
  mkdir -p "$WORK/local$i"
done
mkdir -p "$LOCAL"

# on_host I CMD...: CMD inside host I (its network, hostname and node-local directory).
cat >"$WORK/on_host" <<EOF
#!/usr/bin/env bash
i=\$1; shift
exec ip netns exec "zt-h\$i-$id" unshare --uts --mount bash -c \\
  'hostname "zt-h\$1-$id" && mount --bind "$WORK/local\$1" "$LOCAL" && exec "\${@:2}"' _ "\$i" "\$@"
EOF
# Open MPI's rsh agent: AGENT HOST COMMAND (a command line for a remote shell).
cat >"$WORK/agent" <<EOF
#!/usr/bin/env bash
host=\$1; shift
case \$host in $net.1) i=0 ;; $net.2) i=1 ;; *) echo "agent: unknown host \$host" >&2; exit 1 ;; esac
exec "$WORK/on_host" "\$i" sh -c "\$*"
EOF
chmod +x "$WORK/on_host" "$WORK/agent"
printf '%s slots=2\n%s slots=2\n' "$net.1" "$net.2" >"$WORK/hosts"

prepare_zh
A=(--data "$WORK/data" $TINY --micro-batch 2 --steps 12 --log-every 1 --seed 5 --zero-stage 3
   --offload-optimizer nvme --nvme-dir "$LOCAL" --eval-tokens 512)
TCP=(--bind-to none --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include "$net.0/24"
     --mca oob_tcp_if_include "$net.0/24" --mca plm_rsh_agent "$WORK/agent")
timeout 300 "$WORK/on_host" 0 mpirun -np 4 --hostfile "$WORK/hosts" "${TCP[@]}" \
  "$ZT" train "${A[@]}" --metrics "$WORK/two.jsonl" >"$WORK/two.log" 2>&1 ||
  fail "mpirun over two hosts: $(tail -n 3 "$WORK/two.log")"
mkdir -p "$WORK/one"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 timeout 300 mpirun --oversubscribe -np 4 "$ZT" train \
  "${A[@]/#$LOCAL/$WORK/one}" --metrics "$WORK/one.jsonl" >"$WORK/one.log" 2>&1 ||
  fail "mpirun on one host: $(tail -n 3 "$WORK/one.log")"

python3 - "$WORK" "$id" "$(nproc)" <<'PY' || fail "two-host run"
import json, os, sys
w, id, cores = sys.argv[1], sys.argv[2], int(sys.argv[3])
def L(n): return {o['step']: o['loss'] for o in map(json.loads, open(f'{w}/{n}.jsonl')) if 'loss' in o}
one, two = L('one'), L('two')
assert sorted(one) == sorted(two) == list(range(1, 13)), (sorted(one), sorted(two))
bad = [k for k in one if one[k] != two[k]]
assert not bad, f'step {bad[0]}: one host {one[bad[0]]}, two hosts {two[bad[0]]}'
ranks = json.loads(open(f'{w}/two.jsonl').readline())['ranks']
hosts = [r['host'] for r in ranks]
assert hosts == [f'zt-h0-{id}'] * 2 + [f'zt-h1-{id}'] * 2, hosts
assert [r['local_rank'] for r in ranks] == [0, 1, 0, 1], ranks
assert all(r['threads'] == max(1, cores // 2) for r in ranks), ranks
for h, mine in ((0, [0, 1]), (1, [2, 3])):
    files = sorted(f for f in os.listdir(f'{w}/local{h}') if f.endswith('.h5'))
    assert files == [f'offload_rank_{r:05d}.h5' for r in mine], (h, files)
print(f'two hosts over TCP = one host bit for bit (12 steps); ranks {hosts}; node-local files per host')
PY
