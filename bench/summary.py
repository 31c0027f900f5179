"""The plain-text table ``bench run`` prints at the end."""

from __future__ import annotations

from bench.records import Record, varying_settings


def summary_table(records: list[Record]) -> str:
    """Every record: method, split, σ², BLEU-4, METEOR, ROUGE-L, CIDEr, CLIP-S (when computed), and
    the settings that vary between a method's records (an ablation's switches, a swept τ)."""
    settings = varying_settings(records)
    rows = sorted(records, key=lambda r: (r.kind != "in-domain", r.split, r.method, r.noise_variance or 0, r.seed,
                                          settings.get(r.cell_id, "")))
    head = (f"{'method':<9} {'split':<28} {'kind':<12} {'σ²':>7} {'seed':>4} {'BLEU-4':>7} {'METEOR':>7} {'ROUGE-L':>8} "
            f"{'CIDEr':>7} {'CLIP-S':>7}  setting")
    lines = [head, "-" * len(head)]
    for r in rows:
        noise = f"{r.noise_variance:g}" if r.noise_variance is not None else "-"
        m = r.metrics
        lines.append(f"{r.method:<9} {r.split:<28} {r.kind:<12} {noise:>7} {r.seed:>4} {m.get('bleu4', float('nan')):7.2f} "
                     f"{m.get('meteor', float('nan')):7.2f} {m.get('rouge_l', float('nan')):8.2f} "
                     f"{m.get('cider', float('nan')):7.2f} {_value(m.get('clip_s'))}  {settings.get(r.cell_id, '')}".rstrip())
    return "\n".join(lines)


def _value(value: float | None) -> str:
    return f"{value:7.2f}" if value is not None else f"{'-':>7}"
