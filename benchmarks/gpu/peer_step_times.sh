# Step times on the device machine, on its own JAX, with no compatibility layer (issue: current
# JAX, GPU against a peer). One part per device call (each fits the 600 s limit of one call):
#   bash benchmarks/gpu/peer_step_times.sh lih [WALKERS]     # fire (SPRING, Adam) and FermiNet (Adam), LiH 2x2x2
#   bash benchmarks/gpu/peer_step_times.sh chains [WALKERS]  # fire on periodic H chains of 32-256 electrons
# WALKERS defaults to 4096. Carried from the preparing machine (benchmarks/gpu/prepare.sh builds
# them): .whl (wheels of what the device image lacks; never jax), .pyscf/pyscf.tgz (pyscf without
# the basis files these runs do not read) and .gpuhome (HOME: the Hartree–Fock cache of every
# system here, so no SCF runs on the device). Rehearsal on a CPU, in an environment that has vmc
# and FermiNet: `REHEARSAL=1 bash benchmarks/gpu/peer_step_times.sh lih 8` (nothing installed).
# Writes $OUT/log (and one log per run).
set -u
PART=${1:?lih or chains}; W=${2:-4096}; OUT=${OUT:-/tmp/peer_out}; mkdir -p "$OUT"
if [ -d .whl ] && [ -z "${REHEARSAL:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  [ -f .pyscf/pyscf.tgz ] && { tar xzf .pyscf/pyscf.tgz -C /tmp/site || exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
fi
[ -d .gpuhome ] && export HOME=$PWD/.gpuhome
export XLA_PYTHON_CLIENT_MEM_FRACTION=.92 PYTHONUNBUFFERED=1
log() { echo "$@" | tee -a "$OUT/log"; }
log "== $PART, $W walkers, $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee -a "$OUT/log"
python3 -c 'import jax, jaxlib, haiku, folx, optax; print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "haiku", haiku.__version__, "folx", folx.__version__, "optax", optax.__version__, jax.devices())' 2>&1 | tail -n 3 | tee -a "$OUT/log"
LIMIT=${LIMIT:-560}
# r NAME SECONDS COMMAND...: runs one measurement within what is left of LIMIT; its result lines go to the log
r() {
  local name=$1 want=$2; shift 2
  local left=$((LIMIT - SECONDS)); local t=$(( want < left ? want : left ))
  [ -n "${REHEARSAL:-}" ] && t=$left  # a CPU rehearsal computes (and caches) Hartree–Fock too: no per-run cap
  [ "$t" -lt 30 ] && { log "skip $name: ${left}s left"; return 2; }
  log "-- $name (timeout ${t}s, at ${SECONDS}s)"
  timeout "$t" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  grep -E '^(ferminet \||cutoff |\| |optimization step: )|: [0-9]+ electrons, ' "$OUT/$name.log" | tee -a "$OUT/log"
  [ $rc = 0 ] || tail -n 4 "$OUT/$name.log" | cut -c1-400 | tee -a "$OUT/log"
  log "rc=$rc at ${SECONDS}s"
}
LIH=(configs/lih_2x2x2.yaml --steps 3 --set mcmc.walkers=$W --set system.lattice_constant=7.674 --set 'system.twists=[[0,0,0]]'
     --set pretraining.steps=0 --set mcmc.burn_in=0)
case $PART in
  lih)
    r fire_spring 200 python3 benchmarks/step_time.py "${LIH[@]}"
    r fire_adam 150 python3 benchmarks/step_time.py "${LIH[@]}" --set optimization.optimizer=adam
    r ferminet_adam 300 python3 benchmarks/gpu/ferminet_lih.py --walkers "$W" --steps 3 --mcmc-steps 20 ;;
  chains)
    r fire_chains 540 python3 benchmarks/fire_scaling.py --electrons 32 64 128 256 --dense-electrons --cutoffs 5 \
      --walkers "$W" --steps 2 --mcmc-steps 20 ;;
  *) echo "unknown part $PART (lih or chains)"; exit 2 ;;
esac
