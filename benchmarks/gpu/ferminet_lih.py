"""Step time of Google DeepMind's FermiNet (github.com/google-deepmind/ferminet) on LiH 2x2x2.

    python benchmarks/gpu/ferminet_lih.py --walkers 4096 --steps 3 --mcmc-steps 20
    python benchmarks/gpu/ferminet_lih.py --walkers 8 --steps 1 --mcmc-steps 2   # CPU rehearsal
    # on the device machine: benchmarks/gpu/peer_step_times.sh runs it beside vmc's own step time

A side-by-side reference for benchmarks/step_time.py (configs/lih_2x2x2.yaml). FermiNet is an
installed package (its source installed with `pip install --no-deps`, plus kfac-jax, folx, pyscf,
ml-collections, ...), used by import-and-call only; vmc is not imported.

System: rocksalt LiH, lattice constant 7.674 bohr, primitive fcc vectors a/2 (0,1,1), a/2 (1,0,1),
a/2 (1,1,0), Li at 0 and H at (a/2, 0, 0), tiled 2x2x2: 16 atoms (8 Li, 8 H), 32 electrons
(16 up, 16 down), Gamma point only (real wavefunction, FermiNet's default `complex=False`).

The config is FermiNet's own: `ferminet.base_config.default()` with the periodic settings set the
way FermiNet's periodic example (ferminet/configs/heg.py, its only one) sets them:
  * network.make_feature_layer_fn = ferminet.pbc.feature_layer.make_pbc_feature_layer
    (lattice; include_r_ae=True, its default: real nuclei here, unlike the HEG's ghost atom),
  * network.make_envelope_fn = ferminet.pbc.envelopes.make_multiwave_envelope with
    kpoints = ferminet.pbc.envelopes.make_kpoints(lattice, electrons) (its default: the closed
    shells of supercell reciprocal vectors up to >= 32 of them; 51 here),
  * system.make_local_energy_fn = ferminet.pbc.hamiltonian.local_energy (Ewald sums) with
    heg=False (a neutral solid: no electron-gas background term),
  * pretrain.method = None (FermiNet has no Hartree-Fock pretraining in PBC),
  * everything else FermiNet's default: network_type ferminet, hidden_dims ((256, 32),) * 4,
    use_last_layer False, full_det True, jastrow none, bias_orbitals False, laplacian 'default'
    (jvp of grad, one input at a time), clip_local_energy 5, adam lr 0.05 with 1/(1 + t/1e4)
    decay, MCMC move_width 0.02 with all-electron Metropolis moves;
  except determinants = 4 (FermiNet's default is 16; 4 matches our K=4), mcmc.steps = --mcmc-steps
  (FermiNet's default is 10; 20 matches ours), optimizer = --optimizer (FermiNet's default is kfac)
  and mcmc.burn_in = 0 (not timed).

Pieces used. ferminet.train.train() is one monolithic loop (set-up, burn-in, logging,
checkpoints), so by default the same objects are built from FermiNet's building blocks, in the
order and with the arguments train() uses: networks.make_fermi_net (with the pbc feature layer
and envelope), train.init_electrons, mcmc.make_mcmc_step, pbc.hamiltonian.local_energy,
loss.make_loss, the optimizer (adam: the optax chain train() builds; kfac: kfac_jax.Optimizer with
train()'s arguments), and then FermiNet's own step functions
train.make_training_step(mcmc_step, train.make_opt_update_step(loss, adam)) or
train.make_kfac_training_step(...): one call = mcmc.steps Metropolis steps of all walkers + local
energies + gradient (+ KFAC curvature) + parameter update, the `step` train() calls in its main
loop. The local-energy time is the loss's vmap of the local energy (loss.make_loss's in_axes) over
all walkers, pmapped, after each step. With --via-train the step time is measured inside
ferminet.train.train() itself (between its per-step writer calls), a check that the
building-block step is FermiNet's loop; no local-energy time then. Memory: FermiNet's Ewald sum
holds (electron pairs x 11^3 lattice vectors) per walker; if 4096 walkers exhaust the GPU,
--max-vmap-batch N (FermiNet's optim.max_vmap_batch_size, folx.batched_vmap) chunks the walkers
in the loss and in the timed local energies alike.

jax >= 0.10 (pmap over shard_map): two departures from train(), both outside the timed step.
(1) The optax state is made with FermiNet's constants.pmap (its axis name) where train() has
jax.pmap: the latter's outputs lie on a mesh named '_internal_pmap_axis_name', the step's on
'qmc_pmap_axis', and the second step would compile again (train() does; --via-train leaves that
step out of its median). (2) kfac-jax 0.0.8 calls jax.device_put_replicated (gone in jax 0.10)
when replicate_all_local_devices gets no axis_name, as train() calls it for the MCMC width: the
script passes axis_name, and for --via-train gives that function the default
axis_name=ferminet.constants.PMAP_AXIS_NAME (said on stderr). --optimizer kfac needs jax < 0.9:
kfac-jax 0.0.8 unpacks `Primitive.get_bind_params`, whose return value changed in jax 0.9.
"""

import argparse
import functools
import platform
import statistics
import sys
import tempfile
import time

import folx
import jax
import jax.numpy as jnp
import kfac_jax
import ml_collections
import numpy as np
import optax
from ferminet import (
    base_config,
    constants,
    curvature_tags_and_blocks,
    mcmc,
    networks,
    train,
)
from ferminet import loss as qmc_loss_functions
from ferminet.pbc import envelopes as pbc_envelopes
from ferminet.pbc import feature_layer as pbc_feature_layer
from ferminet.pbc import hamiltonian as pbc_hamiltonian
from ferminet.utils import system

LATTICE_CONSTANT = 7.674  # bohr
AXIS = constants.PMAP_AXIS_NAME


def lih_supercell(a: float = LATTICE_CONSTANT, tiling: int = 2):
    """Atoms (ferminet.utils.system.Atom, bohr) and supercell lattice (columns = vectors)."""
    prim = a / 2 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])  # rows a1, a2, a3
    atoms = []
    for i in range(tiling):
        for j in range(tiling):
            for k in range(tiling):
                r = i * prim[0] + j * prim[1] + k * prim[2]
                atoms.append(system.Atom("Li", tuple(r)))
                atoms.append(system.Atom("H", tuple(r + np.array([a / 2, 0.0, 0.0]))))
    lattice = tiling * prim.T  # FermiNet: columns are the lattice vectors
    return atoms, lattice


def make_config(args) -> ml_collections.ConfigDict:
    """FermiNet's default config with its periodic (pbc) network and Hamiltonian for LiH 2x2x2."""
    atoms, lattice = lih_supercell()
    cfg = base_config.default()
    cfg.system.molecule = atoms
    cfg.system.electrons = (16, 16)
    cfg.batch_size = args.walkers
    cfg.pretrain.method = None  # not implemented by FermiNet for PBC (see configs/heg.py)
    cfg.mcmc.steps = args.mcmc_steps
    cfg.mcmc.burn_in = 0
    cfg.optim.optimizer = args.optimizer
    cfg.optim.laplacian = args.laplacian
    cfg.optim.max_vmap_batch_size = args.max_vmap_batch
    cfg.optim.iterations = args.steps + 1
    cfg.network.determinants = args.determinants
    cfg.network.full_det = True  # FermiNet's default, also set by configs/heg.py
    cfg.system.make_local_energy_fn = "ferminet.pbc.hamiltonian.local_energy"
    cfg.system.make_local_energy_kwargs = {"lattice": lattice, "heg": False}
    cfg.network.make_feature_layer_fn = "ferminet.pbc.feature_layer.make_pbc_feature_layer"
    cfg.network.make_feature_layer_kwargs = {"lattice": lattice, "include_r_ae": True}
    cfg.network.make_envelope_fn = "ferminet.pbc.envelopes.make_multiwave_envelope"
    cfg.network.make_envelope_kwargs = {"kpoints": pbc_envelopes.make_kpoints(lattice, cfg.system.electrons)}
    cfg.debug.deterministic = True
    return base_config.resolve(cfg)


def build(cfg) -> dict:
    """FermiNet's objects for one training run, wired as ferminet.train.train() wires them."""
    ndev = jax.local_device_count()
    if cfg.batch_size % ndev:
        raise ValueError(f"--walkers must be divisible by the {ndev} local devices")
    device_batch_size = cfg.batch_size // ndev
    atoms = jnp.stack([jnp.array(atom.coords) for atom in cfg.system.molecule])
    charges = jnp.array([atom.charge for atom in cfg.system.molecule])
    nspins = cfg.system.electrons
    batch_atoms = kfac_jax.utils.replicate_all_local_devices(
        jnp.tile(atoms[None], [device_batch_size, 1, 1]), axis_name=AXIS)
    batch_charges = kfac_jax.utils.replicate_all_local_devices(
        jnp.tile(charges[None], [device_batch_size, 1]), axis_name=AXIS)
    key = jax.random.PRNGKey(23)  # train()'s seed with debug.deterministic

    feature_layer = pbc_feature_layer.make_pbc_feature_layer(
        natoms=charges.shape[0], nspins=nspins, ndim=cfg.system.ndim, **cfg.network.make_feature_layer_kwargs)
    envelope = pbc_envelopes.make_multiwave_envelope(**cfg.network.make_envelope_kwargs)
    network = networks.make_fermi_net(
        nspins, charges, ndim=cfg.system.ndim, determinants=cfg.network.determinants, states=cfg.system.states,
        envelope=envelope, feature_layer=feature_layer, jastrow=cfg.network.get("jastrow", "default"),
        bias_orbitals=cfg.network.bias_orbitals, full_det=cfg.network.full_det,
        rescale_inputs=cfg.network.get("rescale_inputs", False), complex_output=cfg.network.complex,
        **cfg.network.ferminet)
    key, subkey = jax.random.split(key)
    params = kfac_jax.utils.replicate_all_local_devices(network.init(subkey), axis_name=AXIS)
    signed_network = network.apply

    def logabs_network(*args, **kwargs):
        return signed_network(*args, **kwargs)[1]

    batch_network = jax.vmap(logabs_network, in_axes=(None, 0, 0, 0, 0), out_axes=0)

    key, subkey = jax.random.split(key)
    pos, spins = train.init_electrons(
        subkey, cfg.system.molecule, nspins, batch_size=cfg.batch_size, init_width=cfg.mcmc.init_width)
    pos = kfac_jax.utils.broadcast_all_local_devices(
        jnp.reshape(pos, (ndev, device_batch_size, -1)), axis_name=AXIS)
    spins = kfac_jax.utils.broadcast_all_local_devices(
        jnp.reshape(spins, (ndev, device_batch_size, -1)), axis_name=AXIS)
    data = networks.FermiNetData(positions=pos, spins=spins, atoms=batch_atoms, charges=batch_charges)
    sharded_key = kfac_jax.utils.make_different_rng_key_on_all_devices(key)

    mcmc_step = mcmc.make_mcmc_step(
        batch_network, device_batch_size, steps=cfg.mcmc.steps,
        atoms=atoms if cfg.mcmc.scale_by_nuclear_distance else None, blocks=cfg.mcmc.blocks)
    local_energy = pbc_hamiltonian.local_energy(
        f=signed_network, charges=charges, nspins=nspins, use_scan=False, complex_output=cfg.network.complex,
        laplacian_method=cfg.optim.laplacian, states=cfg.system.states, state_specific=False,
        pp_type=cfg.system.pp.type, pp_symbols=None, **cfg.system.make_local_energy_kwargs)
    evaluate_loss = qmc_loss_functions.make_loss(
        logabs_network, local_energy, clip_local_energy=cfg.optim.clip_local_energy,
        clip_from_median=cfg.optim.clip_median, center_at_clipped_energy=cfg.optim.center_at_clip,
        complex_output=cfg.network.complex, max_vmap_batch_size=cfg.optim.max_vmap_batch_size)

    def learning_rate_schedule(t_):
        return cfg.optim.lr.rate * jnp.power((1.0 / (1.0 + (t_ / cfg.optim.lr.delay))), cfg.optim.lr.decay)

    if cfg.optim.optimizer == "adam":
        optimizer = optax.chain(
            optax.scale_by_adam(**cfg.optim.adam), optax.scale_by_schedule(learning_rate_schedule), optax.scale(-1.0))
        # train(): jax.pmap(optimizer.init); FermiNet's pmap here (see the module docstring)
        opt_state = constants.pmap(optimizer.init)(params)
        step = train.make_training_step(
            mcmc_step=mcmc_step, optimizer_step=train.make_opt_update_step(evaluate_loss, optimizer),
            reset_if_nan=cfg.optim.reset_if_nan)
    elif cfg.optim.optimizer == "kfac":
        k = cfg.optim.kfac
        optimizer = kfac_jax.Optimizer(
            jax.value_and_grad(evaluate_loss, argnums=0, has_aux=True), l2_reg=k.l2_reg,
            norm_constraint=k.norm_constraint, value_func_has_aux=True, value_func_has_rng=True,
            learning_rate_schedule=learning_rate_schedule, curvature_ema=k.cov_ema_decay,
            inverse_update_period=k.invert_every, min_damping=k.min_damping, num_burnin_steps=0,
            register_only_generic=k.register_only_generic, estimation_mode="fisher_exact", multi_device=True,
            pmap_axis_name=AXIS,
            auto_register_kwargs=dict(graph_patterns=curvature_tags_and_blocks.GRAPH_PATTERNS))
        sharded_key, subkeys = kfac_jax.utils.p_split(sharded_key)
        opt_state = optimizer.init(params, subkeys, data)
        step = train.make_kfac_training_step(
            mcmc_step=mcmc_step, damping=k.damping, optimizer=optimizer, reset_if_nan=cfg.optim.reset_if_nan)
    else:
        raise ValueError(f"--optimizer: adam or kfac, not {cfg.optim.optimizer}")
    mcmc_width = kfac_jax.utils.replicate_all_local_devices(jnp.asarray(cfg.mcmc.move_width), axis_name=AXIS)

    # all walkers' local energies: loss.make_loss's vmap of the local energy, pmapped
    vmap = jax.vmap if cfg.optim.max_vmap_batch_size == 0 else functools.partial(
        folx.batched_vmap, max_batch_size=cfg.optim.max_vmap_batch_size)
    batch_local_energy = vmap(
        local_energy, in_axes=(None, 0, networks.FermiNetData(positions=0, spins=0, atoms=0, charges=0)))

    @constants.pmap
    def energies(params, key, data):
        keys = jax.random.split(key, num=data.positions.shape[0])
        return batch_local_energy(params, keys, data)[0]

    nparams = sum(x[0].size for x in jax.tree_util.tree_leaves(params))
    return dict(step=step, energies=energies, params=params, data=data, opt_state=opt_state,
                mcmc_width=mcmc_width, sharded_key=sharded_key, nparams=nparams)


def time_steps(cfg, steps: int) -> dict:
    """Seconds of FermiNet's training step (a warm-up/compile step, then the median of `steps`)
    and of one batched local-energy evaluation of all walkers after each step (median, the
    first, compiling, left out)."""
    b = build(cfg)
    step, energies = b["step"], b["energies"]
    params, data, opt_state = b["params"], b["data"], b["opt_state"]
    mcmc_width, sharded_key = b["mcmc_width"], b["sharded_key"]
    pmoves = np.zeros(cfg.mcmc.adapt_frequency)
    times, e_times, losses = [], [], []
    for t in range(steps + 1):
        sharded_key, subkeys = kfac_jax.utils.p_split(sharded_key)
        jax.block_until_ready((params, data, opt_state, subkeys))
        t0 = time.perf_counter()
        data, params, opt_state, loss, _, pmove = step(data, params, opt_state, subkeys, mcmc_width)
        jax.block_until_ready((data, params, opt_state, loss))
        times.append(time.perf_counter() - t0)
        losses.append(float(loss[0]))
        mcmc_width, pmoves = mcmc.update_mcmc_width(t, mcmc_width, cfg.mcmc.adapt_frequency, pmove, pmoves)
        sharded_key, subkeys = kfac_jax.utils.p_split(sharded_key)
        t0 = time.perf_counter()
        e = jax.block_until_ready(energies(params, subkeys, data))
        e_times.append(time.perf_counter() - t0)
    return {"first_step": times[0], "step": statistics.median(times[1:]), "first_local_energy": e_times[0],
            "local_energy": statistics.median(e_times[1:]), "losses": losses, "pmove": float(pmove[0]),
            "e_mean": float(jnp.mean(e)), "nparams": b["nparams"]}


class _TimingWriter:
    """Writer for ferminet.train.train(): records the wall time of each per-step write."""

    def __init__(self):
        self.stamps, self.losses = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, t, **kwargs):
        self.stamps.append(time.perf_counter())
        self.losses.append(float(kwargs["energy"]))

    def flush(self):
        pass


def time_via_train(cfg, steps: int) -> dict:
    """Step times measured inside ferminet.train.train(), between its per-step writes (each comes
    after the step's loss is fetched to the host). 'first step' includes train()'s set-up and its
    initial-energy evaluation; the median leaves out step 2, which train() compiles again on
    jax >= 0.10 (module docstring), so use --steps >= 3 here."""
    kfac_jax.utils.replicate_all_local_devices = functools.partial(
        kfac_jax.utils.replicate_all_local_devices, axis_name=AXIS)
    print(f"[ferminet_lih] jax {jax.__version__}: kfac_jax.utils.replicate_all_local_devices "
          f"given the default axis_name={AXIS!r} for train()", file=sys.stderr)
    writer = _TimingWriter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg.log.save_path = tmp
        cfg.log.save_frequency = 1e9  # no checkpoint inside the timed loop
        t0 = time.perf_counter()
        train.train(cfg, writer_manager=writer)
    gaps = np.diff(writer.stamps)
    print(f"[ferminet_lih] train() step-to-step seconds: {np.round(gaps, 3).tolist()}", file=sys.stderr)
    return {"first_step": writer.stamps[0] - t0, "step": float(np.median(gaps[1:] if len(gaps) > 1 else gaps)),
            "first_local_energy": float("nan"), "local_energy": float("nan"), "losses": writer.losses,
            "pmove": float("nan"), "e_mean": float("nan"), "nparams": None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--walkers", type=int, default=4096)
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument("--mcmc-steps", type=int, default=20, help="Metropolis steps per optimization step")
    p.add_argument("--optimizer", choices=("adam", "kfac"), default="adam")
    p.add_argument("--pretrain", type=int, default=0, help="HF pretraining iterations: 0 only")
    p.add_argument("--determinants", type=int, default=4, help="FermiNet's default is 16")
    p.add_argument("--laplacian", choices=("default", "folx"), default="default",
                   help="FermiNet's optim.laplacian ('default': jvp of grad; 'folx': forward Laplacian)")
    p.add_argument("--max-vmap-batch", type=int, default=0,
                   help="FermiNet's optim.max_vmap_batch_size (0: plain vmap, its default)")
    p.add_argument("--via-train", action="store_true",
                   help="time the steps inside ferminet.train.train() instead (no local-energy time)")
    args = p.parse_args()
    if args.steps < 1:
        p.error("--steps must be >= 1")
    if args.pretrain:
        p.error("FermiNet implements no Hartree-Fock pretraining for periodic systems: --pretrain 0")
    cfg = make_config(args)
    nk = len(cfg.network.make_envelope_kwargs["kpoints"])
    t = (time_via_train if args.via_train else time_steps)(cfg, args.steps)
    dev = jax.devices()[0]
    print(f"[ferminet_lih] {platform.node()} | params {t['nparams']} | multiwave kpoints {nk} | "
          f"hidden {cfg.network.ferminet.hidden_dims} | dets {cfg.network.determinants} | "
          f"laplacian {cfg.optim.laplacian} | losses {[round(x, 3) for x in t['losses']]} | "
          f"pmove {t['pmove']:.2f} | mean E_L {t['e_mean']:.3f} | "
          f"first local energy (compiling) {t['first_local_energy']:.1f} s", file=sys.stderr)
    print(f"ferminet{' train()' if args.via_train else ''} | LiH 2x2x2 (32 e) | walkers {args.walkers} | "
          f"{args.optimizer} | K={args.determinants} | mcmc {args.mcmc_steps} | step {t['step']:.3f} s | "
          f"local energy {t['local_energy']:.3f} s | first step {t['first_step']:.1f} s | jax {jax.__version__} | "
          f"device {dev.device_kind} x{jax.local_device_count()}")


if __name__ == "__main__":
    main()
