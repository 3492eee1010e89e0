"""Registry of the real data sets' download locations and checksums.

One place for every URL and checksum the pipeline downloads, so a moved mirror or a
re-published archive is a one-line change (or a params override, without code):

``download.urls.<key>`` in params.yaml overrides an entry. The value is either a URL
string (the registry's checksums are kept: a mirror must serve the same bytes) or a
mapping ``{url, sha256, md5, size}``; a mapping that names any of ``sha256``/``md5``/
``size`` replaces *all* of the registry's checksums with its own (``null`` = unchecked).

Entries:

* ``ffhq_json`` - NVIDIA's FFHQ metadata (``ffhq-dataset-v2.json``, 255 MB) on Google
  Drive, with the size and MD5 published in NVlabs/ffhq-dataset ``download_ffhq.py``. Per
  image it lists ``image`` (1024 px) and ``thumbnail`` (128 px) records with
  ``file_url``, ``file_path``, ``file_size`` and ``file_md5``; the per-image files are
  verified against those.
* ``ffhq_files`` - optional base URL/folder that replaces each image's Google Drive
  ``file_url`` by ``<base>/<file_path>`` (a mirror, or ``file:///data/ffhq`` holding
  ``thumbnails128x128/00000/00000.png``...). Not set by default.
* ``animeface`` - nagadomi's AnimeFace Character Dataset zip
  (``animeface-character-dataset/thumb/<id>_<name>/*.png``). No checksum is published.
* ``selfie2anime`` - the U-GAT-IT selfie2anime zip (trainA/trainB/testA/testB), Dropbox
  mirror with the SHA-256 published by LS4GAN/uvcgan ``scripts/download_dataset.sh``.
  The authors' own copy is on Google Drive (id ``1xOWj1UVgp6NKMT3HbPhBbtq2A4EDkghF``),
  for which no checksum is published.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from face2anime.core.params import UserError

_CHECKSUM_KEYS = ("sha256", "md5", "size")


@dataclass(frozen=True)
class Remote:
    """One downloadable file: where it is, what it must hash to, where to cache it.

    ``filename`` is the cache file name; ``sha256``/``md5`` are lowercase hex digests,
    ``size`` is the byte count; any of them may be ``None`` (not checked).
    """

    key: str
    url: str | None
    filename: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    note: str = ""


REGISTRY: dict[str, Remote] = {
    "ffhq_json": Remote(
        key="ffhq_json",
        # drive.usercontent with confirm=t skips Drive's "can't scan for viruses" page
        # that the classic uc?id= link returns for large files.
        url="https://drive.usercontent.google.com/download?id=16N0RV4fHI6joBuKbQAoG34V_cQk7vxSA"
            "&export=download&confirm=t",
        filename="ffhq-dataset-v2.json",
        md5="425ae20f06a4da1d4dc0f46d40ba5fd6",
        size=267793842,
        note="NVlabs/ffhq-dataset metadata; images are listed inside with their own md5/size",
    ),
    "ffhq_files": Remote(
        key="ffhq_files",
        url=None,
        filename="",
        note="optional base URL replacing each FFHQ image's file_url by <base>/<file_path>",
    ),
    "animeface": Remote(
        key="animeface",
        url="http://www.nurs.or.jp/~nagadomi/animeface-character-dataset/data/"
            "animeface-character-dataset.zip",
        filename="animeface-character-dataset.zip",
        note="no published checksum",
    ),
    "selfie2anime": Remote(
        key="selfie2anime",
        url="https://www.dropbox.com/s/9lz6gwwwyyxpdnn/selfie2anime.zip?dl=1",
        filename="selfie2anime.zip",
        sha256="c2a79b0bccc640042413adf3113a384415058ec4065c2fd8aff646f08af12b86",
        note="SHA-256 as published by LS4GAN/uvcgan scripts/download_dataset.sh",
    ),
}


def resolve(key: str, overrides: dict[str, Any] | None = None) -> Remote:
    """The registry entry ``key`` with ``download.urls.<key>`` applied.

    >>> resolve("selfie2anime", {"selfie2anime": "file:///tmp/s.zip"}).sha256[:8]
    'c2a79b0b'
    >>> resolve("selfie2anime", {"selfie2anime": {"url": "file:///tmp/s.zip", "sha256": None}}).sha256 is None
    True
    """
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise UserError(f"param 'download.urls' must be a mapping of {', '.join(REGISTRY)}, "
                        f"got {overrides!r}")
    unknown = sorted(set(overrides) - set(REGISTRY))
    if unknown:
        raise UserError(f"param 'download.urls' has unknown key(s) {', '.join(map(str, unknown))} "
                        f"(known: {', '.join(REGISTRY)})")
    base = REGISTRY[key]
    ov = overrides.get(key)
    if ov is None:
        return base
    name = f"download.urls.{key}"
    if isinstance(ov, str):
        return replace(base, url=ov)
    if not isinstance(ov, dict):
        raise UserError(f"param '{name}' must be a URL string or a mapping "
                        f"{{url, sha256, md5, size}}, got {ov!r}")
    bad = sorted(set(ov) - {"url", *_CHECKSUM_KEYS})
    if bad:
        raise UserError(f"param '{name}' has unknown key(s) {', '.join(map(str, bad))} "
                        "(allowed: url, sha256, md5, size)")
    url = ov.get("url", base.url)
    if url is not None and not isinstance(url, str):
        raise UserError(f"param '{name}.url' must be a string, got {url!r}")
    out = replace(base, url=url)
    if any(k in ov for k in _CHECKSUM_KEYS):
        sha, md5, size = ov.get("sha256"), ov.get("md5"), ov.get("size")
        for k, v, n in (("sha256", sha, 64), ("md5", md5, 32)):
            if v is not None and (not isinstance(v, str) or len(v) != n
                                  or any(c not in "0123456789abcdefABCDEF" for c in v)):
                raise UserError(f"param '{name}.{k}' must be {n} hex digits or null, got {v!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise UserError(f"param '{name}.size' must be a byte count or null, got {size!r}")
        out = replace(out, sha256=sha.lower() if sha else None, md5=md5.lower() if md5 else None,
                      size=size)
    return out
