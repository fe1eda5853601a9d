"""Command line: `vmc run`, `vmc evaluate`, `vmc export`, `vmc systems`.

Bad input ends with one line on stderr naming the problem and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from vmc.errors import InputError

EXIT_INPUT = 2


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
    r.add_argument("--from", dest="params_from", metavar="CHECKPOINT", help="start from the network parameters of a checkpoint (fine-tuning)")

    e = sub.add_parser("evaluate", help="evaluate a checkpoint's wavefunction without training")
    e.add_argument("checkpoint")
    e.add_argument("config", nargs="?", help="systems to evaluate (default: the checkpoint's own)")
    e.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE")
    e.add_argument("--out")

    x = sub.add_parser("export", help="collect the energies of run directories into one file")
    x.add_argument("run_dirs", nargs="+")
    x.add_argument("--out", required=True)
    x.add_argument("--format", choices=["h5", "csv"], default=None, help="default: from the --out suffix")

    sub.add_parser("systems", help="list the systems of the catalog")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "run":
            from vmc.api import run

            run(args.config, out=args.out, params_from=args.params_from, **_overrides(args.overrides))
        elif args.command == "evaluate":
            from vmc.api import evaluate

            evaluate(args.checkpoint, args.config, out=args.out, **_overrides(args.overrides))
        elif args.command == "export":
            from vmc.export import export

            export(args.run_dirs, args.out, args.format)
        elif args.command == "systems":
            from vmc.systems import catalog_names

            print("\n".join(catalog_names()))
    except InputError as e:
        print(f"vmc: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("vmc: interrupted; `vmc run RUN_DIR` resumes from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
