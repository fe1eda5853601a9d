# Builds what benchmarks/gpu/peer_step_times.sh carries to the device machine (its transfer
# limit is 64 MiB in all), on a machine with PyPI, run from the repository root:
#   FERMINET=/path/to/ferminet/source bash benchmarks/gpu/prepare.sh
# .whl       wheels for CPython 3.12 x86_64 (the device image's Python) of what that image lacks:
#            haiku, folx and pydantic for vmc; FermiNet (built from FERMINET) and what it imports
#            (kfac-jax, because ferminet/constants.py imports it, with distrax and tfp). Never
#            jax: the device's own JAX is the point.
# .pyscf     pyscf's wheel unpacked without the large basis files these runs never read, tarred.
# .gpuhome   HOME for the device: ~/.cache/vmc/hf with the Hartree–Fock of every system the
#            script runs, made by rehearsing the script here at 8 walkers (CPU, minutes), which
#            also checks every command of it (run it in an environment with vmc and FermiNet).
# Pass them as `carry` (.whl .pyscf .gpuhome) to the device command
# `bash benchmarks/gpu/peer_step_times.sh lih` (then `chains`).
set -euo pipefail
: "${FERMINET:?path to a FermiNet source checkout (github.com/google-deepmind/ferminet)}"
rm -rf .whl .pyscf .gpuhome /tmp/pyscf_wheel
mkdir -p .whl .pyscf .gpuhome /tmp/pyscf_wheel
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps "${PLATFORM[@]}" -d .whl \
  dm-haiku==0.0.17 jmp folx==0.2.30 jaxtyping wadler-lindig pydantic pydantic-core annotated-types typing-inspection \
  ml-collections absl-py chex kfac-jax==0.0.8 distrax dm-tree immutabledict tfp-nightly decorator cloudpickle toolz
python3 -m pip wheel -q --no-deps -w .whl "$FERMINET"
python3 -m pip download -q --no-deps "${PLATFORM[@]}" -d /tmp/pyscf_wheel "pyscf>=2.14,<2.15"
(cd /tmp/pyscf_wheel && python3 -m zipfile -e pyscf-*.whl unpacked)
# the basis sets of these runs (cc-pVDZ, STO-3G) stay; other large basis files go
find /tmp/pyscf_wheel/unpacked/pyscf/gto/basis -name '*.dat' -size +100k ! -iname '*cc-pvdz*' ! -iname '*sto-3g*' -delete
tar czf .pyscf/pyscf.tgz -C /tmp/pyscf_wheel/unpacked pyscf
# the rehearsal: every command of the script, 8 walkers, Hartree–Fock cached under .gpuhome
REHEARSAL=1 OUT=/tmp/peer_rehearsal bash benchmarks/gpu/peer_step_times.sh lih 8
REHEARSAL=1 OUT=/tmp/peer_rehearsal LIMIT=3000 bash benchmarks/gpu/peer_step_times.sh chains 8
du -sh .whl .pyscf .gpuhome
