"""The ``gnnspec`` command: thin argument parsing over the package's modules.

Every subcommand has ``--help``. Bad input exits with code 2 and a one-line message naming the
file or record and what is wrong.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from gnnspec.errors import InputError

#: Modules that add their own subcommands with ``add_parsers(subparsers)``, in help order.
COMMAND_MODULES = (
    "gnnspec.structures.commands",
    "gnnspec.simulate.commands",
    "gnnspec.data.commands",
    "gnnspec.quantification.commands",
    "gnnspec.train.commands",
    "gnnspec.models.commands",
    "gnnspec.measured.commands",
    "gnnspec.library.commands",
    "gnnspec.analysis.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnnspec",
        description="Equivariant GNNs for core-level spectroscopy (XAS, EELS) of NMC cathodes. Energies in eV, lengths in Angstrom.",
    )
    from gnnspec import __version__

    parser.add_argument("--version", action="version", version=f"gnnspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2 if args.command is None and argv not in (None, []) else 0
    try:
        result = args.func(args)
    except InputError as exc:
        print(f"gnnspec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gnnspec {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
