"""The model card of a CLIP on the shapes world: retrieval recall and the modality gap."""

from __future__ import annotations

import numpy as np


def retrieval(image_emb: np.ndarray, text_emb: np.ndarray, text_owner: np.ndarray) -> dict[str, float]:
    """Recall@1/5 (percent) both ways; ``text_owner[j]`` is the image index of caption j."""
    sims = image_emb @ text_emb.T  # (N images, M captions)
    n, m = sims.shape
    top = np.argsort(-sims, axis=1)[:, :5]
    i2t = [np.any(text_owner[top[i, :k]] == i) for k in (1, 5) for i in range(n)]
    i2t_r1, i2t_r5 = np.mean(i2t[:n]), np.mean(i2t[n:])
    top_img = np.argsort(-sims.T, axis=1)[:, :5]
    t2i_r1 = np.mean(top_img[:, 0] == text_owner)
    t2i_r5 = np.mean(np.any(top_img == text_owner[:, None], axis=1))
    return {"images": n, "captions": m, "i2t_r1": 100 * i2t_r1, "i2t_r5": 100 * i2t_r5,
            "t2i_r1": 100 * t2i_r1, "t2i_r5": 100 * t2i_r5,
            "chance_i2t_r1": 100 * float(np.bincount(text_owner).mean()) / m, "chance_t2i_r1": 100 / n}


def modality_gap(image_emb: np.ndarray, text_emb: np.ndarray, text_owner: np.ndarray) -> dict[str, float]:
    """Gap statistics over true pairs (each caption with its image)."""
    paired = image_emb[text_owner]
    diff = paired - text_emb
    shuffled = np.roll(text_owner, len(np.unique(text_owner)) // 2 * (len(text_owner) // len(np.unique(text_owner))))
    random_cos = np.sum(image_emb[shuffled] * text_emb, axis=1)
    return {
        "true_pair_cosine": float(np.mean(np.sum(paired * text_emb, axis=1))),
        "random_pair_cosine": float(np.mean(random_cos[shuffled != text_owner])),
        "centroid_gap": float(np.linalg.norm(image_emb.mean(0) - text_emb.mean(0))),
        "mean_l2": float(np.mean(np.linalg.norm(diff, axis=1))),
        "mean_linf": float(np.mean(np.abs(diff).max(axis=1))),
        "diff_var_per_dim": float(np.mean(diff**2)),
        "dim": int(image_emb.shape[1]),
    }
