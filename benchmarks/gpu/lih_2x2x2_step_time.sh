# The GPU step-time check of benchmarks/RESULTS.md (sparse vs dense fire, LiH 2x2x2, 4096 walkers).
# Run on the device machine from the repository root with .whl (dependency wheels, jax excluded:
# the machine's jax 0.11.2 is used, through benchmarks/gpu/jax011_shim.py) and .gpuhf (a
# precomputed HF cache) carried; writes $OUT/log. `bash ... auto`: sparse only, local_energy_batch auto
# against 128 (vmc/memory.py); no argument: sparse against dense.
# Prepared here: .whl from `pip download --no-deps --only-binary=:all: --python-version 3.12` of
# dm-haiku jmp kfac-jax folx pydantic pydantic-core annotated-types typing-inspection distrax
# dm-tree immutabledict tfp-nightly optax gast decorator (this venv's versions); .gpuhf from one
# hartree_fock() of the system below with baseline.cache_dir=.gpuhf; .pyscf/pyscf.tgz the pyscf
# wheel unpacked, its basis/*.dat over 100 kB but sto-3g and cc-pvdz deleted, tarred (48 MB).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
# pyscf's wheel (50 MiB) does not fit the transfer beside the others: .pyscf/pyscf.tgz is it without the basis
# files these runs do not read (HF comes from the carried cache).
[ -f .pyscf/pyscf.tgz ] && { tar xzf .pyscf/pyscf.tgz -C /tmp/site || exit 1; }
export XLA_PYTHON_CLIENT_MEM_FRACTION=.92 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee -a $OUT/log
python3 -c 'import jax,jaxlib;print("jax",jax.__version__,jaxlib.__version__,jax.devices())' 2>&1 | tee -a $OUT/log
r() { # impl walkers local_energy_batch steps max_seconds
t=$((530-SECONDS)); [ $t -gt $5 ] && t=$5; [ $t -lt 60 ] && { echo "skip $1 $2: ${t}s left" | tee -a $OUT/log; return 2; }
f=$OUT/$1_$2.log; echo "== $1 walkers=$2 local_energy_batch=$3 steps=$4 timeout=${t}s at ${SECONDS}s" | tee -a $OUT/log
timeout $t python3 benchmarks/gpu/jax011_shim.py benchmarks/step_time.py configs/lih_2x2x2.yaml --steps $4 --set mcmc.walkers=$2 --set system.lattice_constant=7.674 --set 'system.twists=[[0,0,0]]' --set pretraining.steps=0 --set mcmc.burn_in=0 --set baseline.cache_dir=.gpuhf --set model.fire.implementation=$1 --set local_energy_batch=$3 --set optimization.optimizer=adam >$f 2>&1
rc=$?; grep -E '^\[gpushim\]|^HF |^local energy:|^optimization step| \| lih' $f | tee -a $OUT/log; [ $rc = 0 ] || tail -n 3 $f | cut -c1-400 | tee -a $OUT/log
echo "rc=$rc at ${SECONDS}s" | tee -a $OUT/log; [ $rc != 0 ] && [ $rc != 124 ] && grep -q RESOURCE_EXHAUSTED $f && return 3; return $rc; }
if [ "$1" = auto ]; then r sparse 4096 auto 3 260; r sparse 4096 128 3 220; exit 0; fi
r sparse 4096 128 2 280; if [ $? = 3 ]; then r sparse 1024 128 2 200; W=1024; else W=4096; fi
r dense $W 8 1 400; [ $? = 3 ] && [ $W = 4096 ] && r dense 1024 8 1 400; true
