"""Growth curves: every stage at 1x, 10x and 100x the bundled data, in one command.

    python benchmarks/scale.py                            # 1x, 10x, 100x -> benchmarks/README.md
    python benchmarks/scale.py --scales 1 10 --no-readme  # a quick look

For each scale, ``benchmarks/synthetic.py`` writes a calibrated play-history CSV and a
``steam.csv`` of metadata (generated once, kept in ``--work``), then each stage runs as the
command a user would type, in its own child process:

    gamerec --config DATA/gamerec.toml --data-dir WS preprocess --json
    gamerec --config DATA/gamerec.toml --data-dir WS train --epochs E --json
    gamerec --data-dir WS index --json
    gamerec --data-dir WS recommend --all --out WS/recs.parquet --json

Wall time is measured around the child; peak memory is the child's own peak resident set size
(``os.wait4`` returns the ``rusage`` of exactly that child, the per-child form of
``getrusage(RUSAGE_CHILDREN)``). Training throughput and seconds per epoch come from the
command's own report (``history``); epochs are capped (``--epochs``, default 2, 2 and 1) to keep
the 100x run within about half an hour on 2 CPU cores. The table and a text chart replace the
"Scale" section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_WORK = HERE / ".work" / "scale"
DEFAULT_EPOCHS = {1.0: 2, 10.0: 2, 100.0: 1}
BLOCKS = " ▏▎▍▌▋▊▉█"


@dataclass
class Run:
    """One child process: its command, exit status, wall seconds, peak RSS and JSON answer."""

    command: list[str]
    seconds: float
    peak_mib: float
    answer: dict[str, Any] = field(default_factory=dict)


def measure(command: list[str], log: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``command`` as a child; its stdout must end with one JSON document."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log.with_suffix(".out"), log.with_suffix(".err")
    started = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        tail = err_path.read_text(errors="replace")[-3000:]
        sys.exit(f"{' '.join(command)} failed with exit code {child.returncode}:\n{tail}")
    text = out_path.read_text()
    answer = json.loads(text[text.index("{") :]) if "{" in text else {}
    return Run(command, seconds, usage.ru_maxrss / 1024, answer)  # ru_maxrss is in KiB


def gamerec(*args: str) -> list[str]:
    return [sys.executable, "-m", "gamerec", *args]


def shown(command: list[str]) -> str:
    """The command as a user types it, paths relative to the repository where possible."""
    if command[:3] == [sys.executable, "-m", "gamerec"]:
        words = ["gamerec", *command[3:]]
    elif command[0] == sys.executable:
        words = ["python", *command[1:]]
    else:
        words = list(command)
    return " ".join(words).replace(str(ROOT) + "/", "")


def label(scale: float) -> str:
    return f"{scale:g}x"


def run_scale(scale: float, work: Path, epochs: int, threads: int | None) -> dict[str, Any]:
    data, ws = work / f"data-{label(scale)}", work / f"ws-{label(scale)}"
    logs = work / "logs" / label(scale)
    stamp = data / "synthetic.json"
    generated = json.loads(stamp.read_text()) if stamp.is_file() else {}
    generate_cmd = [
        sys.executable,
        str(HERE / "synthetic.py"),
        "--scale",
        f"{scale:g}",
        "--out",
        str(data),
    ]
    if generated.get("scale") != scale or not (data / "interactions.csv").is_file():
        print(f"[{label(scale)}] generating data", flush=True)
        generated = measure(generate_cmd, logs / "generate").answer
    config = str(data / "gamerec.toml")
    result: dict[str, Any] = {"scale": scale, "epochs": epochs, "generated": generated}
    result["commands"] = {"generate": shown(generate_cmd)}
    train_args = ["train", "--epochs", str(epochs), "--json"]
    if threads:
        train_args[-1:-1] = ["--threads", str(threads)]
    stages = {
        "preprocess": gamerec("--config", config, "--data-dir", str(ws), "preprocess", "--json"),
        "train": gamerec("--config", config, "--data-dir", str(ws), *train_args),
        "index": gamerec("--data-dir", str(ws), "index", "--json"),
        "recommend_all": gamerec(
            "--data-dir",
            str(ws),
            "recommend",
            "--all",
            "--out",
            str(ws / "recs.parquet"),
            "--json",
        ),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEREC_")}
    for stage, command in stages.items():
        print(f"[{label(scale)}] {stage}: {shown(command)}", flush=True)
        run = measure(command, logs / stage, env)
        result[stage] = {"seconds": run.seconds, "peak_mib": run.peak_mib, "answer": run.answer}
        result["commands"][stage] = shown(command)
        print(f"[{label(scale)}] {stage}: {run.seconds:.1f} s, {run.peak_mib:,.0f} MiB", flush=True)
    return result


def summarise(result: dict[str, Any]) -> dict[str, float]:
    """The figures of one scale that go into the table."""
    pre = result["preprocess"]["answer"]
    train = result["train"]["answer"]
    history = train.get("history", [])
    epoch_seconds = [h["seconds"] for h in history]
    examples = [h["examples_per_s"] for h in history]
    recs = result["recommend_all"]
    return {
        "users": pre["users"],
        "items": pre["items"],
        "interactions": pre["interactions"],
        "raw_interactions": result["generated"].get("interactions", math.nan),
        "preprocess_s": result["preprocess"]["seconds"],
        "preprocess_mib": result["preprocess"]["peak_mib"],
        "train_users": train["users"],
        "epochs": len(history),
        "epoch_s": sum(epoch_seconds) / max(len(epoch_seconds), 1),
        "examples_per_s": sum(examples) / max(len(examples), 1),
        "train_s": result["train"]["seconds"],
        "train_mib": result["train"]["peak_mib"],
        "rerank": 1.0 if train.get("rerank") else 0.0,
        "valid_ndcg": train["valid_ndcg_at_20"],
        "index_build_s": result["index"]["answer"].get("build_seconds", math.nan),
        "index_s": result["index"]["seconds"],
        "index_mib": result["index"]["peak_mib"],
        "recommend_s": recs["seconds"],
        "recommend_users_per_s": recs["answer"]["users"] / max(recs["answer"]["seconds"], 1e-9),
        "recommend_mib": recs["peak_mib"],
    }


ROWS = [
    ("users kept (5+ games)", "users", "{:,.0f}"),
    ("games", "items", "{:,.0f}"),
    ("interactions kept", "interactions", "{:,.0f}"),
    ("preprocess: wall s", "preprocess_s", "{:,.1f}"),
    ("preprocess: peak RSS MiB", "preprocess_mib", "{:,.0f}"),
    ("train: seconds per epoch", "epoch_s", "{:,.1f}"),
    ("train: users per second", "examples_per_s", "{:,.0f}"),
    ("train: wall s (load, epochs, re-ranker, write)", "train_s", "{:,.1f}"),
    ("train: peak RSS MiB", "train_mib", "{:,.0f}"),
    ("train: co-play re-ranker fitted", "rerank", "{:.0f}"),
    ("train: valid NDCG@20 (capped epochs)", "valid_ndcg", "{:.4f}"),
    ("index: build s (FAISS only)", "index_build_s", "{:,.2f}"),
    ("index: wall s", "index_s", "{:,.1f}"),
    ("index: peak RSS MiB", "index_mib", "{:,.0f}"),
    ("recommend --all: wall s", "recommend_s", "{:,.1f}"),
    ("recommend --all: users per second", "recommend_users_per_s", "{:,.0f}"),
    ("recommend --all: peak RSS MiB", "recommend_mib", "{:,.0f}"),
]


def table(results: list[dict[str, Any]]) -> str:
    figures = [summarise(r) for r in results]
    head = "| | " + " | ".join(label(r["scale"]) for r in results)
    ratios = [(i - 1, i) for i in range(1, len(results))]
    head += "".join(
        f" | {label(results[b]['scale'])} / {label(results[a]['scale'])}" for a, b in ratios
    )
    lines = [head + " |", "|---" + "|---:" * (len(results) + len(ratios)) + "|"]
    for name, key, fmt in ROWS:
        cells = [fmt.format(f[key]) for f in figures]
        growth = []
        for a, b in ratios:
            low, high = figures[a][key], figures[b][key]
            useful = key not in ("rerank", "valid_ndcg") and low and not math.isnan(low)
            growth.append(f"{high / low:.1f}x" if useful else "")
        lines.append(f"| {name} | " + " | ".join(cells + growth) + " |")
    return "\n".join(lines)


def bar(value: float, peak: float, width: int = 40) -> str:
    cells = 0.0 if peak <= 0 else max(0.0, value / peak) * width
    full, part = int(cells), round((cells - int(cells)) * 8)
    if part == 8:
        full, part = full + 1, 0
    return "█" * full + (BLOCKS[part] if part else "")


def chart(results: list[dict[str, Any]]) -> str:
    """Cost per million kept interactions, per stage and scale: flat bars = linear growth."""
    figures = [summarise(r) for r in results]
    stages = [
        ("preprocess", "preprocess_s"),
        ("train epoch", "epoch_s"),
        ("recommend --all", "recommend_s"),
    ]
    lines = ["seconds per million interactions (flat = linear growth)"]
    for name, key in stages:
        values = [f[key] / (f["interactions"] / 1e6) for f in figures]
        peak = max(values)
        for result, value in zip(results, values, strict=True):
            lines.append(f"{name:>16} {label(result['scale']):>5} {bar(value, peak)} {value:,.1f}")
    lines.append("")
    lines.append("peak RSS, GiB (the machine has 23 GiB)")
    for name, key in [
        ("preprocess", "preprocess_mib"),
        ("train", "train_mib"),
        ("recommend --all", "recommend_mib"),
    ]:
        for result, figure in zip(results, figures, strict=True):
            gib = figure[key] / 1024
            lines.append(f"{name:>16} {label(result['scale']):>5} {bar(gib, 24.0)} {gib:.2f}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        memory_kib = 0
    import numpy
    import torch

    return {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "system": f"{platform.system()} {platform.machine()}",
    }


def section(results: list[dict[str, Any]], info: dict[str, Any], total_s: float) -> str:
    scales = ", ".join(label(r["scale"]) for r in results)
    commands = []
    for result in results:
        commands.append(f"# {label(result['scale'])} ({result['epochs']} epoch(s))")
        commands += [
            result["commands"][k]
            for k in ("generate", "preprocess", "train", "index", "recommend_all")
        ]
    generated = "; ".join(
        f"{label(r['scale'])}: {r['generated']['users']:,} users, {r['generated']['items']:,} "
        f"games, {r['generated']['interactions']:,} rows"
        for r in results
    )
    return f"""## Scale

    python benchmarks/scale.py

Every stage at {scales} the bundled data, each as the command a user types, in its own child
process (wall time around the child; peak RSS is that child's `ru_maxrss` from `os.wait4`).
Data: `benchmarks/synthetic.py`, calibrated on steam-200k (games per user, the popularity curve
by rank quantile, the unplayed share and playtime spread; 1-3 favourite genres per user, 70% of
games drawn from them; genres and tags copied from the bundled `steam.csv` by appid). Generated
before preprocessing: {generated}. Default settings, except training epochs capped as shown.

- Machine: {info["cpu"]}, {info["cpus"]} CPUs, {info["memory_gib"]} GiB RAM, {info["system"]};
  Python {info["python"]}, torch {info["torch"]}, numpy {info["numpy"]}
- Load average (1 min) at start {info["load_start"]:.1f}, at end {info["load_end"]:.1f} (on
  {info["cpus"]} CPUs; above that, other jobs shared the cores and wall times are pessimistic)
- Whole run: {total_s / 60:.1f} min (data generated once and kept in `--work`)

{table(results)}

```
{chart(results)}
```

Commands behind each column (`--work` defaults to `benchmarks/.work/scale`):

```
{chr(10).join(commands)}
```
"""


def update_readme(text: str, readme: Path) -> None:
    """Replace the ``## Scale`` section of ``readme`` (or append it)."""
    current = readme.read_text() if readme.is_file() else "# Benchmarks\n"
    start = current.find("\n## Scale\n")
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + 1)
        tail = current[end:] if end >= 0 else ""
        updated = current[: start + 1] + text + tail
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(updated)
    tmp.replace(readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="data and workspaces")
    parser.add_argument(
        "--epochs", type=int, nargs="+", help="epochs per scale (default: 2, 2, 1 for 1x/10x/100x)"
    )
    parser.add_argument("--threads", type=int, help="torch threads for training")
    parser.add_argument("--no-readme", action="store_true", help="print, do not edit the README")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the section from --work/results.json"
    )
    args = parser.parse_args(argv)
    saved = args.work / "results.json"
    if args.render:
        state = json.loads(saved.read_text())
        publish(section(state["results"], state["machine"], state["seconds"]), args.no_readme)
        return 0
    if args.epochs and len(args.epochs) != len(args.scales):
        parser.error("give one --epochs value per scale")
    epochs = args.epochs or [DEFAULT_EPOCHS.get(s, 1) for s in args.scales]
    started = time.perf_counter()
    info = machine()
    info["load_start"] = os.getloadavg()[0]
    results = []
    for scale, n in zip(args.scales, epochs, strict=True):
        results.append(run_scale(scale, args.work.resolve(), n, args.threads))
        info["load_end"] = os.getloadavg()[0]
        state = {"machine": info, "results": results, "seconds": time.perf_counter() - started}
        saved.write_text(json.dumps(state, indent=2) + "\n")
    publish(section(results, info, time.perf_counter() - started), args.no_readme)
    return 0


def publish(text: str, print_only: bool) -> None:
    sys.stdout.write(text)
    if not print_only:
        update_readme(text, HERE / "README.md")
        print(f"updated {HERE / 'README.md'}")


if __name__ == "__main__":
    raise SystemExit(main())
