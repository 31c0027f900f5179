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
    """Gap statistics over true pairs (each caption with its image): ``bench.gap.gap_statistics``."""
    from bench.gap import gap_statistics

    return gap_statistics(image_emb, text_emb, text_owner)


def zero_shot(image_emb: np.ndarray, labels: list[str], prompts: dict[str, list[str]], encode_texts) -> float:
    """Zero-shot accuracy (percent): each image gets the class whose prompts' mean text embedding
    (a prompt ensemble, normalised) is nearest. ``labels[i]`` is image i's true class;
    ``prompts`` maps each class to its prompts; ``encode_texts`` embeds a list of strings."""
    classes = list(prompts)
    table = []
    for name in classes:
        emb = np.asarray(encode_texts(prompts[name]), np.float32).mean(0)
        table.append(emb / max(float(np.linalg.norm(emb)), 1e-12))
    predicted = np.asarray(classes)[np.argmax(image_emb @ np.stack(table).T, axis=1)]
    return 100.0 * float(np.mean(predicted == np.asarray(labels)))


def attribute_prompts(shapes: tuple[str, ...], colours: tuple[str, ...]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Prompt ensembles for the two zero-shot tasks, in the words the captions use: a shape is
    ``a {colour} {shape}`` over every colour, a colour the same over every shape."""
    def phrase(colour: str, shape: str) -> str:
        return f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape}"

    by_shape = {s: [phrase(c, s) for c in colours] for s in shapes}
    by_colour = {c: [phrase(c, s) for s in shapes] for c in colours}
    return by_shape, by_colour
