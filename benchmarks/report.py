"""Turn a pytest-benchmark JSON file into Markdown tables (and one PNG bar chart per group).

    pytest benchmarks/bench_distill_loss.py --benchmark-only --benchmark-json=out.json
    python benchmarks/report.py out.json [--png-dir benchmarks/plots]

Each benchmark's ``extra_info`` carries ``provider`` and ``baseline`` (see benchmarks/conftest.py);
the speed-up column is baseline median / provider median within a group. ``peak_mb`` is shown
when a benchmark recorded it.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path


def tables(data: dict) -> tuple[str, dict[str, list[tuple[str, float]]]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in data["benchmarks"]:
        groups[bench["group"] or bench["name"]].append(bench)
    lines, series = [], {}
    for group, benches in groups.items():
        base = next((b for b in benches if b["extra_info"].get("baseline")), benches[0])
        base_median = base["stats"]["median"]
        lines += [
            f"**{group}**",
            "",
            "| provider | median ms | min ms | speed-up | peak MiB |",
            "|---|---|---|---|---|",
        ]
        series[group] = []
        for b in sorted(benches, key=lambda b: b["stats"]["median"]):
            info, stats = b["extra_info"], b["stats"]
            provider = info.get("provider", b["name"])
            peak = info.get("peak_mb")
            peak_s = f"{peak:.1f}" if isinstance(peak, (int, float)) else "-"
            lines.append(
                f"| {provider} | {stats['median'] * 1e3:.3f} | {stats['min'] * 1e3:.3f} | "
                f"{base_median / stats['median']:.2f}x | {peak_s} |"
            )
            series[group].append((provider, stats["median"] * 1e3))
        lines.append("")
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw", "?")
    header = f"Machine: {cpu}, {machine.get('system', '?')}, python {machine.get('python_version', '?')}\n"
    return header + "\n" + "\n".join(lines), series


def plot(series: dict[str, list[tuple[str, float]]], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    for group, rows in series.items():
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(rows)))
        ax.barh([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
        ax.set_xlabel("median ms (lower is better)")
        ax.set_title(group, fontsize=9)
        fig.tight_layout()
        fig.savefig(out_dir / (re.sub(r"[^A-Za-z0-9]+", "_", group).strip("_") + ".png"), dpi=100)
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("json_file", type=Path)
    parser.add_argument("--png-dir", type=Path, default=None)
    args = parser.parse_args()
    text, series = tables(json.loads(args.json_file.read_text()))
    print(text)
    if args.png_dir is not None:
        plot(series, args.png_dir)


if __name__ == "__main__":
    main()
