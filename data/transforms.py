"""DeMo's train and test transforms for a triplet, with every random draw seeded explicitly.

Train: resize (bicubic) -> horizontal flip (p = INPUT.PROB) -> zero pad INPUT.PADDING -> random
crop back to INPUT.SIZE_TRAIN -> to tensor -> normalise -> timm RandomErasing (p = INPUT.RE_PROB,
pixel mode). Test: resize -> to tensor -> normalise.

Why explicit seeds: a draw depends only on (SOLVER.SEED, epoch, position of the sample in the
epoch's sampled stream, modality), never on the worker process or on the order in which workers
ran. So batches are identical with 0 or N workers, a resumed epoch repeats exactly, and an image
drawn twice in one epoch (two stream positions) gets two augmentations. Flip and crop use a private
torch.Generator; timm's RandomErasing reads the global `random` and torch RNGs, so it runs inside a
forked torch RNG with `random` saved and restored: the caller's RNG streams are left untouched.
INPUT.PAIRED_AUG True shares one draw across the triplet; False draws per modality (DeMo).
"""

import random

import numpy as np
import torch
from PIL import Image
from timm.data.random_erasing import RandomErasing


def sample_seed(seed, epoch, position, stream=0):
    """A 32-bit seed mixed from the four integers (SeedSequence avoids correlated neighbours)."""
    return int(np.random.SeedSequence([seed, epoch, position, stream]).generate_state(1)[0])


def to_uint8(img, size):
    """PIL image -> uint8 tensor (3, H, W), resized to size = (H, W) with PIL bicubic."""
    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), Image.BICUBIC)
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


class TripletTransform:
    """Callable (images: {modality: PIL}, epoch, position) -> {modality: FloatTensor(3, H, W)}."""

    def __init__(self, cfg, is_train):
        inp = cfg.INPUT
        self.is_train = is_train
        self.size = tuple(inp.SIZE_TRAIN if is_train else inp.SIZE_TEST)
        self.modalities = tuple(inp.MODALITIES)
        mean = torch.tensor(inp.PIXEL_MEAN, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(inp.PIXEL_STD, dtype=torch.float32).view(3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add on the uint8 pixels
        self.scale, self.shift = 1.0 / (255.0 * std), mean / std
        self.flip_prob = inp.PROB
        self.padding = inp.PADDING
        self.paired = inp.PAIRED_AUG
        self.seed = cfg.SOLVER.SEED
        self.erase = RandomErasing(probability=inp.RE_PROB, mode="pixel", device="cpu")

    def __call__(self, images, epoch=0, position=0):
        out = {}
        for i, mod in enumerate(self.modalities):
            x = to_uint8(images[mod], self.size)
            if self.is_train:
                s = sample_seed(self.seed, epoch, position, 0 if self.paired else i + 1)
                out[mod] = self._augment(x, s)
            else:
                out[mod] = self._normalise(x)
        return out

    def _normalise(self, x):
        return x.float().mul_(self.scale).sub_(self.shift)

    def _augment(self, x, seed):
        """Flip, pad + crop, normalise, erase: uint8 (3, H, W) -> float (3, H, W), all drawn from
        `seed`. Flip and crop move uint8 pixels (a quarter of the bytes of float)."""
        g = torch.Generator().manual_seed(seed)
        if torch.rand(1, generator=g).item() < self.flip_prob:
            x = x.flip(-1)
        p = self.padding
        if p > 0:
            h, w = self.size
            top = int(torch.randint(0, 2 * p + 1, (1,), generator=g)) - p
            left = int(torch.randint(0, 2 * p + 1, (1,), generator=g)) - p
            # the (h, w) window at (top, left) of the zero-padded image, without building it
            crop = torch.zeros_like(x, memory_format=torch.contiguous_format)
            ys, xs = slice(max(0, top), min(h, h + top)), slice(max(0, left), min(w, w + left))
            yd = slice(ys.start - top, ys.stop - top)
            xd = slice(xs.start - left, xs.stop - left)
            crop[:, yd, xd] = x[:, ys, xs]
            x = crop
        x = self._normalise(x)
        state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                # the CPU generator only: torch.manual_seed would also (lazily) seed CUDA
                torch.default_generator.manual_seed(seed)
                random.seed(seed)
                x = self.erase(x.contiguous())
        finally:
            random.setstate(state)
        return x
