"""Turning results into a table, a markdown file, JSON and a bar chart."""

from __future__ import annotations

from qwen3core.errors import Qwen3CoreError


def _greedy_verdict(result: dict, reference: dict | None) -> str:
    if reference is None or "error" in result or result is reference:
        return "reference" if result is reference else "-"
    ours = result["batches"]["1"]["greedy_tokens"]
    ref = reference["batches"]["1"]["greedy_tokens"]
    if ours == ref:
        return "same"
    first = next(i for i, (a, b) in enumerate(zip(ours, ref)) if a != b)
    return f"differs@{first}"


def rows(results: list[dict], batch_sizes: list[int]) -> list[dict]:
    reference = next((r for r in results if r.get("label") == "eager" and "error" not in r),
                     None)
    out = []
    for r in results:
        row = {"combination": r["label"], "selection": r.get("requested", "")}
        if "error" in r:
            last = r["error"].splitlines()[-1]
            row["error"] = last if len(last) <= 100 else last[:97] + "..."
            row["error_full"] = r["error"]
            out.append(row)
            continue
        b1 = r["batches"]["1"] if "1" in r["batches"] else next(iter(r["batches"].values()))
        row.update({
            "load_s": r["load_seconds"],
            "prefill_tok_s": b1["prefill_tokens_per_s"]["median"],
            "ttft_ms": b1["ttft_seconds"]["median"] * 1000,
            "peak_mib": r["peak_memory_bytes"] / 2**20,
            "greedy": _greedy_verdict(r, reference),
        })
        for b in batch_sizes:
            d = r["batches"][str(b)]["decode_tokens_per_s"]
            row[f"decode_b{b}_tok_s"] = d["median"]
            row[f"decode_b{b}_spread"] = (d["min"], d["max"])
        out.append(row)
    return out


def format_table(table: list[dict], batch_sizes: list[int], *, markdown: bool = False) -> str:
    headers = ["combination", "load s", "prefill tok/s", "TTFT ms"]
    headers += [f"decode b={b} tok/s" for b in batch_sizes]
    headers += ["peak MiB", "greedy vs eager"]
    lines = []
    for row in table:
        if "error" in row:
            lines.append([row["combination"], "error: " + row["error"]] + [""] * (len(headers) - 2))
            continue
        cells = [row["combination"], f"{row['load_s']:.2f}", f"{row['prefill_tok_s']:.1f}",
                 f"{row['ttft_ms']:.1f}"]
        for b in batch_sizes:
            lo, hi = row[f"decode_b{b}_spread"]
            cells.append(f"{row[f'decode_b{b}_tok_s']:.2f} ({lo:.2f}-{hi:.2f})")
        cells += [f"{row['peak_mib']:.0f}", row["greedy"]]
        lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *lines)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines])


def require_matplotlib():
    """matplotlib's pyplot on the file-only Agg backend, or a clear error (checked before a
    benchmark runs, not after)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise Qwen3CoreError("--plot needs matplotlib: pip install 'qwen3core[bench]'") from None
    return plt


def plot(table: list[dict], batch_sizes: list[int], path: str) -> None:
    plt = require_matplotlib()
    ok = [r for r in table if "error" not in r]
    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(4 + 3 * len(batch_sizes), 4),
                             squeeze=False)
    for ax, b in zip(axes[0], batch_sizes):
        names = [r["combination"] for r in ok]
        values = [r[f"decode_b{b}_tok_s"] for r in ok]
        errs = [[v - r[f"decode_b{b}_spread"][0] for v, r in zip(values, ok)],
                [r[f"decode_b{b}_spread"][1] - v for v, r in zip(values, ok)]]
        ax.bar(names, values, yerr=errs, capsize=3, color="tab:blue")
        ax.set_title(f"decode, batch {b}")
        ax.set_ylabel("tokens/s")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
