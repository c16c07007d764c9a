"""``python -m softening_lib models|data|run|book`` -- the book's command line."""

from __future__ import annotations

import argparse
import ast
import sys


def _parse_param(text: str):
    name, _, value = text.partition("=")
    if not name or not _:
        raise SystemExit(f"-p expects NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m softening_lib", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("models", help="the model registry: what can run here, and why not")
    sub.add_parser("data", help="datasets: local / mirrored / downloadable / missing")
    for name in ("run", "book"):
        p = sub.add_parser(name, help="execute chapters with papermill" + (" and build the book" if name == "book" else ""))
        p.add_argument("--chapter", "-c", action="append", help="chapter number or name (repeatable); default all")
        p.add_argument("--model", "-m", action="append",
                       help="registry name or package.module:factory (repeatable); default: the chapter's own")
        p.add_argument("--preset", default="default", choices=["smoke", "default", "full"])
        p.add_argument("-p", "--param", action="append", default=[], help="extra chapter parameter NAME=VALUE")
        p.add_argument("--force", action="store_true", help="re-execute even if inputs are unchanged")
        if name == "book":
            p.add_argument("--no-strict", action="store_true", help="do not treat Sphinx warnings as errors")
    args = parser.parse_args(argv)

    import pandas as pd

    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 90)
    if args.cmd == "models":
        from .models import available_models

        print(available_models()[["model", "available", "parameters", "training_set", "reason", "fix"]].to_string(index=False))
        return 0
    if args.cmd == "data":
        from .datasets import status

        print(status()[["dataset", "status", "title", "license"]].to_string(index=False))
        return 0
    from . import runner

    extra = dict(_parse_param(p) for p in args.param)
    try:
        if args.cmd == "run":
            runs = runner.execute(runner.plan(args.chapter, args.model, args.preset, extra), force=args.force)
            return 1 if any(r.status == "failed" for r in runs) else 0
        runner.run_and_build(args.chapter, args.model, args.preset, force=args.force, strict=not args.no_strict,
                             extra=extra)
    except runner.RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
