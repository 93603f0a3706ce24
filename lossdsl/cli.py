"""The `lossdsl` command line (LANGUAGE.md section 8). It only composes stages; every
`LossDSLError` is rendered as a diagnostic on stderr, a traceback only with --debug."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lossdsl import __version__
from lossdsl.errors import LossDSLError

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def _files(paths: Sequence[str]) -> list[Path]:
    """Files as given; a directory stands for the .loss files in it."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        found.extend(sorted(path.glob("*.loss")) if path.is_dir() else [path])
    return found


def _params(pairs: Sequence[str]) -> dict[str, float]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"lossdsl: --param takes NAME=VALUE, got `{pair}`")
        try:
            params[name] = float(value)
        except ValueError:
            raise SystemExit(f"lossdsl: --param {name} needs a number, got `{value}`") from None
    return params


def cmd_check(args: argparse.Namespace) -> int:
    from lossdsl.analysis import check_files

    return check_files(
        _files(args.files), as_json=args.json, strict=args.strict, explain=args.explain
    )


def cmd_compile(args: argparse.Namespace) -> int:
    import lossdsl

    spec = lossdsl.load(args.file, args.loss)
    source = spec.emit(args.target, mode=args.mode, params=_params(args.param))
    if args.output:
        Path(args.output).write_text(source, encoding="utf-8")
        print(f"wrote {args.output} ({spec.name}, {args.target})", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from lossdsl.verify import verify_files

    return verify_files(_files(args.files), backend=args.backend, points=args.points)


def cmd_show(args: argparse.Namespace) -> int:
    from lossdsl.show import show

    return show(args.file, args.loss, latex=args.latex, plot=args.plot)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lossdsl", description=__doc__)
    top.add_argument("--version", action="version", version=f"lossdsl {__version__}")
    top.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = top.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="certify differentiability and report hazards")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--json", action="store_true", help="machine-readable report")
    check.add_argument("--strict", action="store_true", help="warnings fail the check")
    check.add_argument("--explain", action="store_true", help="list stability rewrites")
    check.set_defaults(run=cmd_check)

    comp = sub.add_parser("compile", help="emit a standalone PyTorch or JAX module")
    comp.add_argument("file", metavar="FILE")
    comp.add_argument("--target", choices=("torch", "jax"), required=True)
    comp.add_argument("-o", "--output", metavar="OUT.py")
    comp.add_argument("--loss", help="which loss of the file (default: the last)")
    comp.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    comp.add_argument(
        "--mode",
        choices=("eager", "compiled"),
        default="eager",
        help="torch: the source for eager use, or the one mode='compiled' runs through "
        "torch.compile (default: eager)",
    )
    comp.set_defaults(run=cmd_compile)

    ver = sub.add_parser("verify", help="check generated gradients numerically")
    ver.add_argument("files", nargs="+", metavar="FILE")
    ver.add_argument("--backend", choices=("torch", "jax"), default=None)
    ver.add_argument("--points", type=int, default=8, help="random points per loss")
    ver.set_defaults(run=cmd_verify)

    show = sub.add_parser("show", help="print a loss as mathematics")
    show.add_argument("file", metavar="FILE")
    show.add_argument("--loss", help="which loss of the file")
    show.add_argument("--latex", action="store_true")
    show.add_argument("--plot", metavar="OUT.png", help="plot the loss and its gradient in 1-D")
    show.set_defaults(run=cmd_show)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except LossDSLError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_ERRORS
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `lossdsl check ... | head`
        sys.stderr.close()
        return EXIT_ERRORS
    except Exception as exc:  # an internal error: say so plainly, traceback only on request
        if args.debug:
            raise
        print(
            f"lossdsl: internal error: {type(exc).__name__}: {exc}\n"
            "help: rerun with --debug for a traceback, and please report it",
            file=sys.stderr,
        )
        return EXIT_ERRORS


if __name__ == "__main__":
    sys.exit(main())
