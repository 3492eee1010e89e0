"""Procedural two-domain face data set: human "photos" and anime "characters".

Both domains are drawn from ONE latent attribute space
(:data:`~face2anime.data.synthetic.attributes.ATTRIBUTES`), so every image has ground-truth
attributes that a good photo->anime translation must preserve (hair colour and style, skin
tone, eye colour, mouth state, glasses, face shape, background). The shared attributes are
rendered the same way in both domains (same hue families, same silhouettes), so an attribute
predictor trained on characters can read them off translated humans.

What separates the domains on purpose:

* always-present, decisive local cues: the EYES (small almond eyes with iris, sclera and
  lid line vs large anime eyes with big white highlights and a thick lash line), the
  MOUTH (shaded lips vs a simple line/D-shape) and, less strongly, the nose (soft
  shading with nostrils vs a tiny stroke);
* global cues (noise level, blur, outline thickness on face/hair contours incl. none,
  shading strength, background and hair texture) are drawn from the SAME distributions in
  both domains; only the kind of shading (soft gradient vs two-tone cel) is skewed
  (70/30) so each domain keeps its look. A human-vs-character classifier therefore has
  to look at eyes and mouth, which is what Grad-CAM selection relies on.

A share of the images is *hard* (``clean=False``, see
:data:`~face2anime.data.synthetic.attributes.HARD_KINDS`): occluded eyes or mouth, clutter,
low contrast, or a small off-centre face. Part boxes always say where the parts are (for
occlusions: where they would be). Both domains can have hard images (``hard_share`` for
humans, ``hard_share_character`` for characters): with hard humans only, "is something in
the way" becomes a class cue, and a judge trained on such data calls an occluded or tiny
*character* "human".

Everything is deterministic per seed; each image has its own RNG derived from
``(seed, domain, index)``, so results do not depend on generation order. Rendering is
vectorised numpy on small windows (signed-distance shapes with 1-px anti-aliasing), so
one core renders and writes about 200 128-px PNGs per second (:mod:`.bench`).

Modules, in dependency order (each imports only those above it, plus the project's core):

* :mod:`.attributes`: the attribute space, domains, hard kinds, palettes and the per-image
  RNG (``image_rng``, ``sample_attributes``, ``hard_assignment``); numpy only;
* :mod:`.geometry`: signed-distance shapes and the canvas that paints them;
* :mod:`.scene`: an image's continuous parameters (pose, light, style, colours) and shading;
* :mod:`.parts`: background, clutter, body, hair, face outline, glasses and occluders;
* :mod:`.features`: eyes, eyebrows, noses and mouths, the parts that differ by domain;
* :mod:`.effects`: low contrast, blur and sensor noise on the finished image;
* :mod:`.render`: ``render``, ``render_one``, ``render_counterpart``;
* :mod:`.dataset`: ``generate`` (the PNG files and manifest) and ``manifest_columns``;
* :mod:`.contact_sheet`: the attribute-matched preview grid of a generated set;
* :mod:`.bench`: images per second of ``generate``.

This file imports nothing on purpose: importing a submodule runs only that submodule's
imports, so each DVC stage depends on exactly the modules it uses (``tests/test_dvc_deps.py``).
"""
