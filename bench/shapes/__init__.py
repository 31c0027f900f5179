"""The embedded ``shapes`` world: procedural scenes, their captions, their own small CLIP.

It exists so that every method and every split kind runs end to end on a CPU with no network,
with the phenomena this field studies really present: a modality gap between image and text
embeddings, a domain shift between caption corpora (``shapes-coco`` vs ``shapes-flickr``),
caption styles (``shapes-romantic``, ``shapes-humor``), and a gap between the rendered
"photos" and the clean images the world's text-to-image generator draws.
"""
