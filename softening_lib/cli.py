"""``python -m softening_lib models|data|compute|run|book`` -- the book's command line.

Models named with ``--model`` are checked before anything runs: an unknown name fails within
a second or two with the close matches, a known model that cannot run here with the fix.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys


def _parse_param(text: str):
    name, _, value = text.partition("=")
    if not name or not _:
        raise SystemExit(f"-p expects NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


class CliError(RuntimeError):
    pass


def check_models(names: list[str] | None) -> list[str]:
    """The models of ``--model``, tags expanded, each known and runnable here; else a
    :class:`CliError` naming the model and the fix (before any kernel or model starts)."""
    if not names:
        return []
    from . import models as registry

    out: list[str] = []
    for name in names:
        try:
            expanded = registry.expand([name]) if name.startswith("@") else [name]
            for one in expanded:
                registry.check_available(one)
                out.append(one)
        except (registry.ModelError, KeyError, ValueError) as exc:
            raise CliError(f"--model {name}: {exc}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["measure"]:  # the book-free command: softening_lib.measure.main
        from .measure import main as measure_main

        return measure_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m softening_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("models", help="the model registry: what can run here, and why not")
    sub.add_parser("data", help="datasets: local / mirrored / downloadable / missing")
    sub.add_parser("measure", help="a model's softening scale on your DFT-labelled frames (measure --help)")
    pc = sub.add_parser("compute", help="compute what a chapter needs for a model (cached, resumable)")
    pc.add_argument("--chapter", "-c", required=True, action="append", help="chapter number or name (repeatable)")
    pc.add_argument("--model", "-m", required=True, action="append",
                    help="registry name, @tag or package.module:factory (repeatable)")
    pc.add_argument("--preset", default="default", choices=["smoke", "default", "full"])
    pc.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .executor import add_arguments

    add_arguments(pc)  # --scheduler / --workers: one Dask task per (model, case); --device auto|cpu|cuda
    for name in ("run", "book"):
        p = sub.add_parser(name, help="execute chapters with papermill" + (" and build the book" if name == "book" else ""))
        p.add_argument("--chapter", "-c", action="append", help="chapter number or name (repeatable); default all")
        p.add_argument("--model", "-m", action="append",
                       help="registry name, @tag or package.module:factory (repeatable); default: the chapter's own")
        p.add_argument("--preset", default="default", choices=["smoke", "default", "full"])
        p.add_argument("-p", "--param", action="append", default=[], help="extra chapter parameter NAME=VALUE")
        p.add_argument("--force", action="store_true", help="re-execute even if inputs are unchanged")
        p.add_argument("--no-compute", action="store_true",
                       help="with --model: do not compute missing results first (the page shows what is cached)")
        if name == "book":
            p.add_argument("--no-strict", action="store_true", help="do not treat Sphinx warnings as errors")
            p.add_argument("--student", action="store_true",
                           help="also build the student edition (no solutions) into _build/student")
    args = parser.parse_args(argv)

    if args.cmd == "models":
        from .models import registry_table

        print(registry_table(width=100))
        return 0
    if args.cmd == "data":
        import textwrap

        from .datasets import status

        table = status()
        width = max(map(len, table["dataset"])) + 2
        print(f"{'dataset':<{width}}status / title / license")
        print("-" * 100)
        for row in table.itertuples():
            print(f"{row.dataset:<{width}}{row.status}")
            for text in (row.title, f"license: {row.license}"):
                print(" " * width + textwrap.shorten(str(text), 100 - width))
        return 0

    from . import runner

    try:
        models = check_models(args.model)
        chapters = [runner.find_chapter(c).stem for c in args.chapter] if args.chapter else None
        if args.cmd == "compute" and (args.workers or args.scheduler or args.device):
            from .executor import cli_compute

            if args.workers or args.scheduler:
                return cli_compute(chapters or [p.stem for p in runner.chapters()], models, args.preset,
                                   scheduler=args.scheduler, workers=args.workers, device=args.device,
                                   progress=not args.no_progress)
            os.environ["SOFTENING_DEVICE"] = args.device
        if args.cmd == "compute":
            return _compute(chapters, models, args.preset, progress=not args.no_progress)
        extra = dict(_parse_param(p) for p in args.param)
        runs = runner.plan(chapters, models or None, args.preset, extra)  # checks parameters first
        if models and not args.no_compute:
            status = _compute([r.chapter for r in runs], models, args.preset, progress=True, extra=extra)
            if status:  # the pages list the failed cases with their errors; the book is still built
                print("warning: some cases failed (see the lines above); their pages list them with "
                      "the error", file=sys.stderr)
            runs = runner.plan(chapters, models, args.preset, extra)
        if args.cmd == "run":
            runs = runner.execute(runs, force=args.force)
            print(runner.summary(runs))
            return 1 if any(r.status == "failed" for r in runs) else 0
        runner.run_and_build(chapters, models or None, args.preset, force=args.force,
                             strict=not args.no_strict, extra=extra, runs=runs)
        if args.student:
            runner.build_student(strict=not args.no_strict)
    except (runner.RunnerError, CliError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _compute(chapters: list[str] | None, models: list[str], preset: str, progress: bool = True,
             extra: dict | None = None) -> int:
    """``compute``: each chapter's task computes what is missing for each model; one summary
    line each. Exit status 1 when a case failed (skipped cases are not failures)."""
    import inspect

    from . import runner, task

    failed = 0
    for chapter in chapters or [p.stem for p in runner.chapters()]:
        accepted = inspect.signature(task.load_task(chapter).cases).parameters
        params = {k: v for k, v in (extra or {}).items() if k in accepted}  # -p values the task's cases take
        for model in models:
            result = task.compute_chapter(chapter, model, preset, progress=progress, **params)
            failed += int(result.get("failed", 0) > 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
