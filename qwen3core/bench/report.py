"""Turning results into a table, a markdown file, JSON and a bar chart."""

from __future__ import annotations

from qwen3core.errors import Qwen3CoreError


def _first_difference(result: dict, reference: dict) -> int | None:
    ours = result["batches"]["1"]["greedy_tokens"]
    ref = reference["batches"]["1"]["greedy_tokens"]
    return next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)


def _greedy_verdict(result: dict, reference: dict | None) -> str:
    if reference is None or "error" in result or result is reference:
        return "reference" if result is reference else "-"
    first = _first_difference(result, reference)
    return "same" if first is None else f"differs@{first}"


def explain_difference(result: dict, reference: dict, dtype: str) -> str | None:
    """Why greedy tokens differ from the reference's, judged by the equivalence suite's rule:
    in a rounding dtype two implementations may pick different tokens where the reference's
    top-1/top-2 margin is within twice the dtype's tolerance (a near-tie); elsewhere, or in
    float64, a different token is a failure."""
    first = _first_difference(result, reference)
    if first is None:
        return None
    from qwen3core.dtypes import parse_dtype
    from qwen3core.testing.tolerances import tolerance_for

    batch = reference["batches"]["1"]
    margins, scales = batch.get("greedy_margins"), batch.get("greedy_logit_scales")
    head = f"{result['label']} differs from {reference['label']} at step {first}"
    if not margins or first >= len(margins):
        return head + " (the reference's margins were not recorded)"
    tolerance = tolerance_for(parse_dtype(dtype))
    allowed = 2 * tolerance.relative * max(1.0, scales[first])
    margin = margins[first]
    if tolerance.margin_exempt and margin <= allowed:
        verdict = ("a near-tie: the equivalence suite lets implementations pick either "
                   "token there")
    elif tolerance.margin_exempt:
        verdict = "a clear choice: the equivalence suite would count this as a failure"
    else:
        verdict = f"in {dtype} every token must match: the equivalence suite would fail this"
    return (f"{head}: {reference['label']}'s top-1/top-2 logit margin there is {margin:.4g}; "
            f"the {dtype} rule allows a different token when the margin is at most "
            f"2 x {tolerance.relative:g} x max(1, |logits|) = {allowed:.4g}: {verdict}")


def explanations(results: list[dict], dtype: str) -> list[str]:
    reference = next((r for r in results if r.get("label") == "eager" and "error" not in r),
                     None)
    if reference is None:
        return []
    found = [explain_difference(r, reference, dtype) for r in results
             if r is not reference and "error" not in r]
    return [line for line in found if line]


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
            "runs": b1["decode_tokens_per_s"].get("n", 2),
        })
        for b in batch_sizes:
            d = r["batches"][str(b)]["decode_tokens_per_s"]
            row[f"decode_b{b}_tok_s"] = d["median"]
            row[f"decode_b{b}_spread"] = (d["min"], d["max"])
        out.append(row)
    return out


def format_table(table: list[dict], batch_sizes: list[int], *, markdown: bool = False) -> str:
    headers = ["combination", "load s", "prefill tok/s", "TTFT ms"]
    # Batches above 1 count every row's tokens: the machine's total throughput.
    headers += [f"decode b={b} tok/s" + (" (total)" if b > 1 else "") for b in batch_sizes]
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
            value = f"{row[f'decode_b{b}_tok_s']:.2f}"
            cells.append(value if row.get("runs", 2) == 1 else f"{value} ({lo:.2f}-{hi:.2f})")
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


def plot(table: list[dict], batch_sizes: list[int], path: str, title: str = "") -> None:
    """Decode speed per combination, one panel per batch size, the value on each bar; the
    error bars span the runs' range. ``title``: what was measured (model, dtype, device,
    date)."""
    plt = require_matplotlib()
    ok = [r for r in table if "error" not in r]
    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(4 + 3 * len(batch_sizes), 4.6),
                             squeeze=False)
    for ax, b in zip(axes[0], batch_sizes):
        names = [r["combination"] for r in ok]
        values = [r[f"decode_b{b}_tok_s"] for r in ok]
        errs = [[v - r[f"decode_b{b}_spread"][0] for v, r in zip(values, ok)],
                [r[f"decode_b{b}_spread"][1] - v for v, r in zip(values, ok)]]
        bars = ax.bar(names, values, yerr=errs, capsize=3, color="tab:blue")
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], padding=2, fontsize=8)
        ax.set_title(f"decode, batch {b}")
        ax.set_ylabel("tokens/s" if b == 1 else f"tokens/s, total of {b} rows")
        ax.tick_params(axis="x", rotation=30)
        ax.margins(y=0.15)  # room for the labels above the tallest bar
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
