"""Command line: `vmc run`, `vmc plan`, `vmc evaluate`, `vmc export`, `vmc report`, `vmc systems`.

Every expected failure ends with one line on stderr and an exit status of its own
(vmc/errors.py): 2 bad input, 3 diverged, 4 output not writable, 130/143 stopped by
SIGINT/SIGTERM after a checkpoint.
"""

from __future__ import annotations

import argparse
import sys

from vmc.errors import InputError, Interrupted, VmcError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise InputError(message)


def _overrides(pairs: list[str]) -> dict:
    from vmc.config import parse_override

    return dict(parse_override(p) for p in pairs or [])


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vmc", description="Neural-network variational Monte Carlo for molecules and crystals.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="optimize a wavefunction and evaluate its energy")
    r.add_argument("config", help="YAML config, or a run directory to resume")
    r.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a config key (YAML value)")
    r.add_argument("--out", help="run directory (default runs/<config>-<time>)")
    r.add_argument("--from", dest="params_from", metavar="CHECKPOINT",
                   help="start a new run from the network parameters of a checkpoint (fine-tuning); the settings that shape "
                        "them (basis, model name, elements, determinants, network sizes) come from the checkpoint")

    pl = sub.add_parser("plan", help="devices, memory of every phase and the estimated wall time of a run, without starting it")
    pl.add_argument("config", help="YAML config")
    pl.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a config key (YAML value)")
    pl.add_argument("--from", dest="params_from", metavar="CHECKPOINT", help="as `vmc run --from` (fine-tuning)")
    pl.add_argument("--timing-walkers", type=int, default=None, metavar="K",
                    help="time the steps on K walkers per device and scale (default: all on a GPU, 64 on a CPU)")

    e = sub.add_parser("evaluate", help="evaluate a checkpoint's wavefunction without training")
    e.add_argument("checkpoint")
    e.add_argument("config", nargs="?", help="systems to evaluate (default: the checkpoint's own); the network's settings come from the checkpoint")
    e.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE")
    e.add_argument("--out")

    x = sub.add_parser("export", help="collect the energies of run directories into one file")
    x.add_argument("run_dirs", nargs="+")
    x.add_argument("--out", required=True)
    x.add_argument("--format", choices=["h5", "csv"], default=None, help="default: from the --out suffix")

    rp = sub.add_parser("report", help="write report.html (training curves, energies, equation of state) for run directories")
    rp.add_argument("run_dirs", nargs="+")
    rp.add_argument("--out", help="directory for report.html and its figures (default: the run directory, for one run)")
    rp.add_argument("--atom-energy", dest="atom_energies", action="append", metavar="ELEMENT=HA", help="isolated-atom energy for cohesive energies")
    rp.add_argument("--tolerance", type=float, default=1.0, help="mHa per atom, for the steps-to-converge comparison of several runs")
    rp.add_argument("--reference", type=float, metavar="HA", help="a literature energy per atom in the thermodynamic limit, "
                    "drawn beside the finite-size extrapolation")

    sub.add_parser("systems", help="list the systems of the catalog")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "run":
            from vmc.api import run

            run(args.config, out=args.out, params_from=args.params_from, **_overrides(args.overrides))
        elif args.command == "plan":
            from vmc.api import build_config, explicit_keys
            from vmc.plan import plan

            overrides = _overrides(args.overrides)
            if args.timing_walkers is not None and args.timing_walkers < 1:
                raise InputError(f"--timing-walkers {args.timing_walkers}: must be at least 1")
            plan(build_config(args.config, overrides), args.params_from, frozenset(explicit_keys(overrides)), args.timing_walkers)
        elif args.command == "evaluate":
            from vmc.api import evaluate

            evaluate(args.checkpoint, args.config, out=args.out, **_overrides(args.overrides))
        elif args.command == "export":
            from vmc.export import export

            export(args.run_dirs, args.out, args.format)
        elif args.command == "report":
            from vmc.cohesive import parse_atom_energies
            from vmc.report import write_report

            print(write_report(args.run_dirs, args.out, parse_atom_energies(args.atom_energies), args.tolerance, args.reference))
        elif args.command == "systems":
            from vmc.systems import catalog_names

            print("\n".join(catalog_names()))
    except (VmcError, Interrupted) as e:
        print(f"vmc: {'error: ' if isinstance(e, InputError) else ''}{e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("vmc: interrupted; `vmc run RUN_DIR` resumes from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
