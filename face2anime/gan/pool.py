"""CycleGAN's image pool: a history of generated images that the discriminators also see."""
from __future__ import annotations


from typing import Any

import torch


class ImagePool:
    """CycleGAN's history of generated images (``size`` 0 = off); each image keeps its CAM.

    ``query(images [B,3,H,W], cams [B,1,h,w] | None)`` returns a batch of the same shape: while
    the pool fills, the inputs; then, per image, with probability 1/2 a random stored image
    (replaced by the new one), else the new image. Randomness from its own seeded generator.

    Storage is one preallocated tensor per kind (no per-image tensors): a query draws its
    decisions first (the same draws, in the same order, as the classic per-image loop), then
    moves the data with one gather and one scatter.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.n = 0
        self.images: torch.Tensor | None = None
        self.cams: torch.Tensor | None = None
        self.gen = torch.Generator().manual_seed(seed)

    def _plan(self, b: int) -> tuple[list[int], list[tuple[int, int]]]:
        """(indices of new images to append, [(batch index, pool slot) swaps]) for a batch of ``b``."""
        append, swap = [], []
        n = self.n
        for i in range(b):
            if n < self.size:
                append.append(i)
                n += 1
            elif float(torch.rand((), generator=self.gen)) > 0.5:
                swap.append((i, int(torch.randint(0, self.size, (), generator=self.gen))))
        return append, swap

    def query(self, images: torch.Tensor, cams: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.size == 0:
            return images, cams
        images = images.detach()
        append, swap = self._plan(images.shape[0])
        if self.images is None:
            self.images = images.new_empty((self.size, *images.shape[1:]))
            self.cams = None if cams is None else cams.new_empty((self.size, *cams.shape[1:]))
        if append:  # appends come first in the batch (the pool fills up), so a swap may pick them
            a = torch.tensor(append, device=images.device)
            self.images[self.n:self.n + len(append)] = images[a]
            if cams is not None and self.cams is not None:
                self.cams[self.n:self.n + len(append)] = cams[a]
            self.n += len(append)
        out_i, out_c = images, cams
        if swap:
            rows = torch.tensor([i for i, _ in swap], device=images.device)
            slots = torch.tensor([j for _, j in swap], device=images.device)
            # a slot drawn twice in one batch: the later image sees the earlier one's swap (as the loop did)
            out_i, out_c = images.clone(), (None if cams is None else cams.clone())
            if len(set(slots.tolist())) == len(swap):
                out_i[rows] = self.images[slots]
                self.images[slots] = images[rows]
                if cams is not None and self.cams is not None and out_c is not None:
                    out_c[rows] = self.cams[slots]
                    self.cams[slots] = cams[rows]
            else:
                for i, j in swap:
                    out_i[i] = self.images[j]
                    self.images[j] = images[i]
                    if cams is not None and self.cams is not None and out_c is not None:
                        out_c[i] = self.cams[j]
                        self.cams[j] = cams[i]
        return out_i, out_c

    def state_dict(self) -> dict[str, Any]:
        return {"images": None if self.images is None else self.images[:self.n].cpu(),
                "cams": None if self.cams is None else self.cams[:self.n].cpu(),
                "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        imgs, cams = state["images"], state["cams"]
        self.n = 0 if imgs is None else len(imgs)
        self.images = self.cams = None
        if imgs is not None:
            self.images = imgs.new_empty((self.size, *imgs.shape[1:])).to(device)
            self.images[:self.n] = imgs.to(device)
            if cams is not None:
                self.cams = cams.new_empty((self.size, *cams.shape[1:])).to(device)
                self.cams[:self.n] = cams.to(device)
        self.gen.set_state(state["gen"])
