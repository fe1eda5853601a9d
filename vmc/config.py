"""The run configuration: YAML in, validated `Config` out, fully resolved YAML back.

Every option has its default written here, and `dump_config` writes all of them, so the
`config.yaml` of a run directory says exactly what ran and can be run again. Problems are
raised as one-line `InputError`s that name the config key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vmc.errors import InputError

PositiveInt = Annotated[int, Field(ge=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)


class BaselineConfig(_Section):
    """Hartree–Fock baseline (PySCF)."""

    basis: str = "cc-pVDZ"
    cache_dir: str = "~/.cache/vmc/hf"
    # Crystals: diffuse primitives below this exponent make density fitting ill-conditioned.
    exp_to_discard: float | None = Field(0.1, ge=0)


class SlaterJastrowConfig(_Section):
    """HF orbitals times (1 + small orbital correction), cusp Jastrow and a neural Jastrow."""

    hidden: int = Field(32, ge=1)
    layers: int = Field(2, ge=1)
    orbital_correction: bool = True


MAX_CUTOFF = 1000.0  # bohr: fire's cutoffs (53 nm, wider than any molecule VMC reaches)


class FireConfig(_Section):
    """Finite-range embeddings with transferable orbitals (docs/physics.md, "fire")."""

    cutoff: float | None = Field(5.0, gt=0)  # bohr; None: every pair interacts
    embedding_dim: int = Field(64, ge=1)
    filter_dim: int = Field(16, ge=1)
    n_gaussians: int = Field(8, ge=1)
    message_passing_rounds: int = Field(1, ge=0)
    mlp_layers: int = Field(2, ge=1)
    orbital_dim: int = Field(32, ge=1)
    descriptor_hidden: int = Field(32, ge=1)
    jastrow_hidden: int = Field(32, ge=1)
    orbital_cutoff: float = Field(8.0, gt=0)  # bohr; smooth cutoff of the orbital envelopes (finite image sums)
    # joint: g(h_i, r_i - R_A - L) is one MLP of both (docs/physics.md, "fire"); factored:
    # g_geom(r_i - R_A - L) * g_emb(h_i), so the sum over atoms and images depends on r_i alone
    # and its Laplacian carries 3 tangents instead of 3 n_el
    orbital_mlp: Literal["joint", "factored"] = "joint"
    # sparse: neighbour lists and a per-electron Laplacian (docs/physics.md, "Sparse fire");
    # dense: every pair, masked by the cutoff (the reference). Same parameters, same function.
    implementation: Literal["sparse", "dense"] = "sparse"

    @field_validator("cutoff", "orbital_cutoff")
    @classmethod
    def _cutoff_in_range(cls, value):
        # Beyond every distance in a system VMC can treat, a larger cutoff changes nothing but
        # the numbers it enters: radial widths up to c, squared distances compared with c^2, in
        # float32. (For crystals, the images a cutoff implies are bounded per cell as well:
        # vmc.systems.check_images.)
        if value is not None and value > MAX_CUTOFF:
            raise ValueError(f"expected at most {MAX_CUTOFF:g} bohr (got {value:g})")
        return value

    @model_validator(mode="after")
    def _sparse_needs_finite_range(self):
        if self.implementation == "sparse" and (self.cutoff is None or self.message_passing_rounds > 1 or self.orbital_mlp != "joint"):
            raise ValueError("implementation 'sparse' needs a finite cutoff, message_passing_rounds <= 1 and orbital_mlp "
                             "'joint'; set model.fire.implementation: dense")
        return self


class ModelConfig(_Section):
    name: Literal["hf", "slater_jastrow", "fire"] = "slater_jastrow"
    determinants: int = Field(1, ge=1)
    # Elements the parameters cover; null means the elements of the systems in this config.
    elements: list[str] | None = None
    slater_jastrow: SlaterJastrowConfig = SlaterJastrowConfig()
    fire: FireConfig = FireConfig()


class McmcConfig(_Section):
    walkers: int = Field(1024, ge=1)  # in total, over all devices
    steps: int = Field(10, ge=1)  # Metropolis steps (sweeps, for single moves) between two optimization steps
    moves: Literal["all", "single"] = "all"  # all-electron moves, or sweeps of single-electron moves
    burn_in: int = Field(100, ge=0)  # steps with the starting parameters before optimization
    proposal_width: float = Field(0.1, gt=0)  # bohr, initial Gaussian proposal width
    target_acceptance: float = Field(0.5, gt=0, lt=1)
    init_width: float = Field(1.0, gt=0)  # bohr, spread of starting walkers around nuclei


class PretrainingConfig(_Section):
    steps: int = Field(200, ge=0)
    learning_rate: float = Field(3e-3, gt=0)


class KfacConfig(_Section):
    learning_rate: float = Field(0.05, gt=0)
    damping: float = Field(1e-3, gt=0)
    norm_constraint: float = Field(1e-3, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    curvature_ema: float = Field(0.95, gt=0, lt=1)
    inverse_update_period: int = Field(1, ge=1)


class AdamConfig(_Section):
    learning_rate: float = Field(3e-3, gt=0)
    b1: float = Field(0.9, ge=0, lt=1)
    b2: float = Field(0.999, ge=0, lt=1)


class SpringConfig(_Section):
    learning_rate: float = Field(0.1, gt=0)
    damping: float = Field(1e-3, gt=0)  # λ, added to the Gram matrix of the centred, /√N gradients
    momentum: float = Field(0.99, ge=0, lt=1)  # μ
    max_norm: float = Field(1.0, gt=0)  # the update direction's norm is clipped to this
    # walkers whose parameter gradients are computed at once: at most this many, fewer when
    # they would not fit the device (vmc/memory.py)
    chunk: int = Field(64, ge=1)


class OptimizationConfig(_Section):
    steps: int = Field(1000, ge=0)
    optimizer: Literal["spring", "kfac", "adam"] = "spring"
    # learning rate lr0 / (1 + t / decay_steps)
    decay_steps: float = Field(1000.0, gt=0)
    # local energies are clipped to median +- clip_width * mean absolute deviation (gradient only)
    clip_width: float = Field(5.0, gt=0)
    # A step is rejected, and retried with fresh samples from the state before it, when its
    # energy, variance or new parameters are not finite, or when its energy lies more than
    # reject_jump robust standard deviations from the median of the system's last 50
    # accepted steps (docs/robustness.md); null: only the finiteness checks.
    reject_jump: float | None = Field(10.0, gt=0)
    # this many consecutive rejections stop the run (exit status 3)
    max_rejected: int = Field(10, ge=1)
    kfac: KfacConfig = KfacConfig()
    spring: SpringConfig = SpringConfig()
    adam: AdamConfig = AdamConfig()


class EvaluationConfig(_Section):
    steps: int = Field(1000, ge=0)
    burn_in: int = Field(100, ge=0)


class CheckpointConfig(_Section):
    every: int = Field(500, ge=1)  # optimization steps between checkpoints
    keep: int = Field(3, ge=1)  # how many recent checkpoints to keep
    # fine-tune (same as --from): start from the network parameters of this checkpoint; the
    # settings that shape them (basis, model name, elements, determinants, network sizes) come
    # from the checkpoint's stored config unless set explicitly (vmc/finetune.py). A run
    # records the absolute path here.
    restore: str | None = None
    # sha256 of the restore file's bytes, recorded by the run that starts from it: a resume
    # before the run's first own checkpoint refuses the file if it changed; null: not checked
    # (docs/robustness.md, "Fine-tuning")
    restore_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _hash_of_a_file(self):
        if self.restore_sha256 is not None and self.restore is None:
            raise ValueError("restore_sha256 is set but restore is null (the hash is of the restore file)")
        return self


class Config(_Section):
    # A catalog name, a path to a system YAML file, an inline mapping, or a list of these.
    system: Any = "H2"
    seed: int = 0
    precision: Literal["float32", "float64"] = "float32"
    # walkers per device whose local energies are computed at once (memory); null: all;
    # auto: at most 128, and no more than fit half a device's memory (vmc/memory.py)
    local_energy_batch: PositiveInt | Literal["auto"] | None = "auto"
    distributed: bool = False  # multi-host: call jax.distributed.initialize() first
    baseline: BaselineConfig = BaselineConfig()
    model: ModelConfig = ModelConfig()
    mcmc: McmcConfig = McmcConfig()
    pretraining: PretrainingConfig = PretrainingConfig()
    optimization: OptimizationConfig = OptimizationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    @field_validator("seed")
    @classmethod
    def _seed_in_32_bits(cls, value):
        # jax.random.PRNGKey keeps only the low 32 bits of a seed in float32 runs (2**32 would
        # repeat seed 0's random numbers), and numpy's SeedSequence refuses negative seeds
        if not 0 <= value < 2**32:
            raise ValueError(f"expected an integer from 0 to 2**32 - 1 = {2**32 - 1} (got {value})")
        return value

    @field_validator("local_energy_batch", mode="before")
    @classmethod
    def _batch_word(cls, value):
        if isinstance(value, str) and value != "auto":
            raise ValueError(f"expected a positive integer, 'auto' or null (got {value!r})")
        return value


def _type_tag(part) -> bool:
    """pydantic names a union's alternatives in error locations ('list[float]', 'TwistGrid',
    'float'); config keys are lowercase identifiers or list indices."""
    return isinstance(part, str) and (not part.isidentifier() or part[0].isupper() or part in ("float", "int", "str", "bool"))


def validation_message(error: pydantic.ValidationError, prefix: str = "") -> str:
    """One line naming the first offending key of a pydantic error."""
    # of a union's alternatives, the one that got furthest into the input says most
    first = max(error.errors(), key=lambda e: len(e["loc"]))
    loc = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "" and not _type_tag(p))
    if first["type"] == "extra_forbidden":
        return f"config key '{loc}': unknown key"
    msg = first["msg"].removeprefix("Value error, ")
    if "input" in first and first["type"] not in ("missing", "value_error"):
        return f"config key '{loc}': {msg} (got {first['input']!r})"
    return f"config key '{loc}': {msg}"


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, lines: tuple[int, int]):
        super().__init__(f"key '{key}' appears twice (lines {lines[0]} and {lines[1]})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader (no Python objects, no code) that refuses a key given twice in one
    mapping: YAML forbids it, PyYAML would keep the last one silently."""

    def construct_document(self, node):
        self._check_unique(node, (), set())
        return super().construct_document(node)

    def _check_unique(self, node, path: tuple, seen_nodes: set) -> None:
        if id(node) in seen_nodes:  # an alias: checked where its anchor stands
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_unique(item, (*path, str(i)), seen_nodes)
        elif isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # <<: merged keys may be overridden
                    self._check_unique(value_node, path, seen_nodes)
                    continue
                key = self.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
                child = (*path, str(key))
                if key is not None:
                    if key in lines:
                        raise DuplicateKey(".".join(child), (lines[key], key_node.start_mark.line + 1))
                    lines[key] = key_node.start_mark.line + 1
                self._check_unique(value_node, child, seen_nodes)


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)


def load_yaml(path: str | Path) -> Any:
    """Reads a YAML file with the safe loader (no Python objects, no code); a key given twice
    in one mapping is an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        return _load(path.read_text())
    except DuplicateKey as e:
        raise InputError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise InputError(f"{path}: not valid YAML{line}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """'mcmc.walkers=256' -> ('mcmc.walkers', 256). The value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set {text!r}: expected KEY=VALUE")
    try:
        parsed = _load(value)
    except DuplicateKey as e:
        raise InputError(f"--set {key.strip()}: {e}") from None
    except yaml.YAMLError:
        raise InputError(f"--set {key}: value {value!r} is not valid YAML") from None
    return key.strip(), parsed


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Returns a copy of `raw` with dotted keys set, e.g. {'mcmc.walkers': 256}.

    Setting a field below `system` when `system` is a catalog name turns it into a mapping
    with that name, so `--set system.lattice_constant=7.0` works on `system: lih_rocksalt`.
    Shallower keys are applied first, whatever their order: `system=h_bcc` replaces the
    section, then `system.supercell=[2,2,2]` sets a field of the new one.
    """
    raw = copy.deepcopy(raw) if raw else {}
    for key, value in sorted(overrides.items(), key=lambda kv: kv[0].count(".")):
        parts = key.split(".")
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif isinstance(child, str) and node is raw and part == "system":
                child = node[part] = {"name": child}
            elif not isinstance(child, dict):
                raise InputError(f"--set {key}: '{'.'.join(parts[: i + 1])}' is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def make_config(source: str | Path | dict | Config | None = None, overrides: dict | None = None) -> Config:
    """Validated config from a YAML path, a mapping or a Config, with dotted-key overrides."""
    if isinstance(source, Config):
        raw = source.model_dump()
    elif source is None:
        raw = {}
    elif isinstance(source, dict):
        raw = source
    else:
        raw = load_yaml(source)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise InputError(f"{source}: the config must be a YAML mapping")
    raw = apply_overrides(raw, overrides or {})
    try:
        return Config.model_validate(raw)
    except pydantic.ValidationError as e:
        raise InputError(validation_message(e)) from None


def dump_config(config: Config) -> str:
    """The fully resolved config as YAML, every default written out."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, default_flow_style=None)
