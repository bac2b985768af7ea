"""DeMo's train and test transforms, split between the loader workers and the batch's device.

Train: resize (bicubic) -> horizontal flip (p = INPUT.FLIP_PROB) -> zero pad INPUT.PADDING -> random
crop back to INPUT.SIZE_TRAIN -> to tensor -> normalise -> random erasing as timm's RandomErasing
(p = INPUT.RE_PROB, pixel mode: N(0, 1) noise in the normalised space) -> with
INPUT.MODALITY_DROPOUT, zeroing the sample's dropped modalities (as TEST.MISSING_MODALITIES does).
Test: resize -> to tensor -> normalise.

Where the work runs: a loader worker only decodes (and resizes, when the file is not already at
the input size) into uint8 pixels and draws the augmentation's random numbers
(`SampleTransform`). The pixel work - flip, pad + crop, normalise, erase - runs on the whole
batch at once on the training device (`BatchTransform`), after a copy of uint8 pixels, a quarter
of the bytes of float ones. On a GPU that takes the data pipeline's CPU cost per image from a few
milliseconds to the decode alone.

Why explicit seeds: a draw depends only on (SOLVER.SEED, epoch, position of the sample in the
epoch's sampled stream, modality), never on the worker process or on the order in which workers
ran. So batches are identical with 0 or N workers, a resumed epoch repeats exactly, and an image
drawn twice in one epoch (two stream positions) gets two augmentations. The erasing noise comes from
a generator seeded by the batch's first draw. INPUT.PAIRED_AUG True shares one draw (flip, crop,
erased box) across the triplet; False draws per modality (DeMo).
"""

import itertools
import math
import random
import warnings

import numpy as np
import torch
from PIL import Image

from .datasets import read_images

try:  # deprecated since torchvision 0.29 (in favour of TorchCodec); PIL does the work without it
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    warnings.filterwarnings(
        "ignore",
        message="The image decoding and encoding capabilities of TorchVision are deprecated",
        category=DeprecationWarning,
    )
except ImportError:  # pragma: no cover
    decode_jpeg = None

# Columns of a sample's draws, one row per modality; KEEP (0: the modality is dropped) exists
# only with INPUT.MODALITY_DROPOUT > 0, so that without it the draws are exactly as before.
FLIP, TOP, LEFT, ERASE_TOP, ERASE_LEFT, ERASE_H, ERASE_W, NOISE_SEED, KEEP = range(9)
N_DRAWS = 8
DROPOUT_STREAM = 1000  # the modality-dropout draw's own stream: the others are 0 .. M


def sample_seed(seed, epoch, position, stream=0):
    """A 32-bit seed mixed from the four integers (SeedSequence avoids correlated neighbours)."""
    return int(np.random.SeedSequence([seed, epoch, position, stream]).generate_state(1)[0])


def to_uint8(img, size):
    """PIL image -> uint8 tensor (3, H, W), resized to size = (H, W) with PIL bicubic."""
    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def read_pixels(record, size):
    """{modality: uint8 (3, H, W)} of a record at size = (H, W).

    JPEGs are decoded straight into tensors by torchvision (libjpeg-turbo: the same pixels as PIL,
    without PIL's intermediate copies; about 3x less CPU a triplet); one at another size is then
    resized by PIL as usual, from those pixels. Other files, RGBNT100 strips, and JPEGs torchvision
    refuses go through `read_images` (PIL), which also names a broken file in its DatasetError.
    """
    if decode_jpeg is not None and not record.strip_index:
        try:
            out = {
                mod: decode_jpeg(read_file(path), mode=ImageReadMode.RGB)
                for mod, path in record.files.items()
            }
        except RuntimeError:  # not a JPEG, or broken: PIL decides (and names the file)
            out = None
        if out is not None:
            return {
                mod: x
                if tuple(x.shape[1:]) == tuple(size)
                else to_uint8(Image.fromarray(x.permute(1, 2, 0).numpy()), size)
                for mod, x in out.items()
            }
    return {mod: to_uint8(img, size) for mod, img in read_images(record).items()}


def draw_augmentation(rng, size, flip_prob, padding, erase_prob):
    """The random numbers of one image's train augmentation, as `FLIP ... NOISE_SEED`.

    The crop offset (top, left) is where the (H, W) window sits relative to the unpadded image, in
    [-padding, padding]. The erased box follows timm's RandomErasing(mode="pixel", max_count=1):
    with probability `erase_prob`, up to 10 tries of an area in [2 %, 1/3] of the image and a
    log-uniform aspect in [0.3, 1/0.3]; height 0 means nothing is erased.
    """
    h, w = size
    flip = int(rng.random() < flip_prob)
    top = rng.randint(-padding, padding) if padding > 0 else 0
    left = rng.randint(-padding, padding) if padding > 0 else 0
    box = (0, 0, 0, 0)
    if rng.random() <= erase_prob:
        for _ in range(10):
            area = rng.uniform(0.02, 1 / 3) * h * w
            aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            eh = int(round(math.sqrt(area * aspect)))
            ew = int(round(math.sqrt(area / aspect)))
            if ew < w and eh < h:
                box = (rng.randint(0, h - eh), rng.randint(0, w - ew), eh, ew)
                break
    return (flip, top, left, *box, rng.getrandbits(62))


class SampleTransform:
    """The workers' part: the random draws. Callable (pixels: {modality: uint8 (3, H, W) at
    `size`, from `read_pixels`}, epoch, position) -> (the pixels of INPUT.MODALITIES, draws
    LongTensor(M, N_DRAWS) or None at test time)."""

    def __init__(self, cfg, is_train):
        inp = cfg.INPUT
        self.is_train = is_train
        self.size = tuple(inp.SIZE_TRAIN if is_train else inp.SIZE_TEST)
        self.modalities = tuple(inp.MODALITIES)
        self.flip_prob, self.padding, self.erase_prob = inp.FLIP_PROB, inp.PADDING, inp.RE_PROB
        self.paired = inp.PAIRED_AUG
        self.seed = cfg.SOLVER.SEED
        self.dropout = inp.MODALITY_DROPOUT if is_train else 0.0
        self.drop_sets = dropout_sets(self.modalities, inp.MODALITY_DROPOUT_SETS)

    def __call__(self, pixels, epoch=0, position=0):
        pixels = {mod: pixels[mod] for mod in self.modalities}
        if not self.is_train:
            return pixels, None
        rows = []
        for i in range(len(self.modalities)):
            stream = 0 if self.paired else i + 1
            rng = random.Random(sample_seed(self.seed, epoch, position, stream))
            rows.append(
                draw_augmentation(rng, self.size, self.flip_prob, self.padding, self.erase_prob)
            )
        if self.dropout > 0:
            rng = random.Random(sample_seed(self.seed, epoch, position, DROPOUT_STREAM))
            dropped = ()
            if rng.random() < self.dropout:
                dropped = self.drop_sets[rng.randrange(len(self.drop_sets))]
            rows = [(*r, int(m not in dropped)) for r, m in zip(rows, self.modalities)]
        return pixels, torch.tensor(rows, dtype=torch.long)


def dropout_sets(modalities, entries):
    """INPUT.MODALITY_DROPOUT_SETS -> tuples of modality names; () -> every single modality and
    every pair (every proper, non-empty subset of three)."""
    if entries:
        return [tuple(str(e).split("+")) for e in entries]
    mods = tuple(modalities)
    return [c for k in range(1, len(mods)) for c in itertools.combinations(mods, k)]


class BatchTransform:
    """The device's part, on a whole batch: uint8 images (B, 3, H, W) -> normalised float32; in
    training also flip, pad + crop and erase, following batch["draws"] (B, M, N_DRAWS).

    Runs where the batch is (the training GPU, or the CPU); a few kernels for the batch, whatever
    its size. Float batches pass through unchanged (already normalised).
    """

    def __init__(self, cfg, is_train):
        inp = cfg.INPUT
        self.is_train = is_train
        self.modalities = tuple(inp.MODALITIES)
        mean = torch.tensor(inp.PIXEL_MEAN, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(inp.PIXEL_STD, dtype=torch.float32).view(3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add on the uint8 pixels
        self._affine = (1.0 / (255.0 * std), mean / std)
        self._on = {}  # device -> (scale, shift)

    def __call__(self, batch):
        images = batch["images"]
        mods = [m for m in self.modalities if m in images]
        if not mods or images[mods[0]].dtype != torch.uint8:
            return batch
        # Pixels are channels-last in memory (decoders write H x W x 3): work in (N, H, W, 3).
        x = torch.stack([images[m].permute(0, 2, 3, 1) for m in mods])  # (M, B, H, W, 3)
        m, b = x.shape[:2]
        x = x.flatten(0, 1)
        draws = batch.get("draws") if self.is_train else None
        if draws is not None:
            draws = draws.to(x.device, non_blocking=True).transpose(0, 1).reshape(m * b, -1)
            x = self._flip_crop(x, draws)
        x = self._normalise(x)
        if draws is not None:
            x = self._erase(x, draws, batch["noise_seed"])
            if draws.shape[1] > KEEP:  # modality dropout: the dropped inputs carry no signal
                x = x * draws[:, KEEP, None, None, None].to(x.dtype)
        out = dict(batch)
        # (M, B, 3, H, W), contiguous: one plain layout for the model and for compiled graphs
        x = x.view(m, b, *x.shape[1:]).permute(0, 1, 4, 2, 3).contiguous()
        out["images"] = dict(zip(mods, x.unbind(0)))
        return out

    def _normalise(self, x):
        if x.device not in self._on:
            self._on[x.device] = tuple(t.to(x.device).view(3) for t in self._affine)
        scale, shift = self._on[x.device]
        return torch.addcmul(-shift, x.float(), scale)

    @staticmethod
    def _flip_crop(x, draws):
        """out[n, y, x] = flip?(x[n])[y + top, x + left], zero outside the image; (N, H, W, 3)."""
        n, h, w, _ = x.shape
        ys = draws[:, TOP, None] + torch.arange(h, device=x.device)  # (N, H) source rows
        xs = draws[:, LEFT, None] + torch.arange(w, device=x.device)  # (N, W) window columns
        inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
        xs = torch.where(draws[:, FLIP, None] > 0, w - 1 - xs, xs)  # flip first, then crop
        rows = ys.clamp(0, h - 1)[:, :, None]
        cols = xs.clamp(0, w - 1)[:, None, :]
        idx = torch.arange(n, device=x.device)[:, None, None]
        return x[idx, rows, cols] * inside[..., None]

    @staticmethod
    def _erase(x, draws, seed):
        n, h, w, _ = x.shape
        gen = torch.Generator(device=x.device).manual_seed(int(seed))
        noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        ys = torch.arange(h, device=x.device)[None, :, None]
        xs = torch.arange(w, device=x.device)[None, None, :]
        t, lft, eh, ew = (
            draws[:, c, None, None] for c in (ERASE_TOP, ERASE_LEFT, ERASE_H, ERASE_W)
        )
        box = (ys >= t) & (ys < t + eh) & (xs >= lft) & (xs < lft + ew)  # (N, H, W)
        return torch.where(box[..., None], noise, x)
