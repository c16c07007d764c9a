"""How much DFT the project has computed: one line per ``data/reference/*`` folder.

Counts the JSON records of each GPAW reference (finished / failed) and sums the CPU time they
report (``cpu_s``, ``cpu_time_s`` or ``dft.cpu_time_s``; the WBM campaign's per-compound
``progress.json`` has wall times of MD and DFT instead). The PROVENANCE files quote these numbers.

    python scripts/reference_report.py            # a Markdown table
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softening_lib import config  # noqa: E402

OK = ("ok", "done")


def _cpu(rec: dict) -> float:
    for key in ("cpu_s", "cpu_time_s"):
        if rec.get(key):
            return float(rec[key])
    dft = rec.get("dft")
    return float(dft.get("cpu_time_s") or 0.0) if isinstance(dft, dict) else 0.0


def folder_report(folder: Path) -> dict:
    n_ok = n_failed = 0
    cpu = 0.0
    for path in sorted(folder.rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        if path.name == "progress.json":  # the WBM campaign: per-compound wall times (one core)
            for c in rec.get("compounds", {}).values():
                n_ok += int(c.get("n_frames", 0))
                n_failed += int(c.get("n_failed", 0))
                cpu += float(c.get("dft_wall_s", 0.0)) + float(c.get("md_wall_s", 0.0))
            continue
        if "status" not in rec and not _cpu(rec):
            continue  # a summary or metadata file, not a calculation
        status = rec.get("status", "ok")
        if status in OK:
            n_ok += 1
            cpu += _cpu(rec)
        elif status == "failed":
            n_failed += 1
    return {"folder": folder.name, "finished": n_ok, "failed": n_failed, "cpu_h": cpu / 3600}


def main() -> int:
    rows = [folder_report(f) for f in sorted(config.reference_dir().iterdir()) if f.is_dir()]
    print("| folder | finished | failed | CPU hours |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['folder']} | {r['finished']} | {r['failed']} | {r['cpu_h']:.1f} |")
    print(f"| total | {sum(r['finished'] for r in rows)} | {sum(r['failed'] for r in rows)} | "
          f"{sum(r['cpu_h'] for r in rows):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
