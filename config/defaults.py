"""The whole configuration tree, one comment per key.

Key names follow DeMo / TransReID where those codebases have one that says what the key means, so
their YAML files merge here; where it does not (a warm-up counted in epochs named ITERS, a flag
written as an int), the key has a name of its own and `config/validate.py`'s legacy table
translates DeMo's name and values. `get_cfg()` returns a fresh clone: nothing in the project
mutates a global config.
"""

from yacs.config import CfgNode as CN

# The names of TEST.RETURN_PATTERN's values, as logs and reports print them.
PATTERN_NAMES = {1: "ori", 2: "fused", 3: "ori+fused"}

_C = CN()

# ------------------------------------------------------------------------------------------------
# MODEL
# ------------------------------------------------------------------------------------------------
_C.MODEL = CN()
_C.MODEL.DEVICE = "auto"  # "auto" (cuda when available), "cuda" or "cpu"
# Backbone type: a name registered in modeling/backbones/specs.py (ViT-B-16 is CLIP's tower).
_C.MODEL.TRANSFORMER_TYPE = "ViT-B-16"
_C.MODEL.PRETRAIN_PATH = ""  # backbone weights (.pt, .pth, .npz, or our model_*.pth); "" = random
_C.MODEL.STRIDE_SIZE = (16, 16)  # patch-embedding stride (H, W); < 16 gives overlapping patches
_C.MODEL.SIE_CAMERA = True  # learnable camera embedding (SIE)
_C.MODEL.SIE_COE = 1.0  # scale of the SIE embedding
_C.MODEL.DROP_PATH = 0.1  # stochastic depth of the ImageNet ViT backbone (the CLIP tower has none)
_C.MODEL.DROP_OUT = 0.0  # dropout inside the backbone
_C.MODEL.ATT_DROP_RATE = 0.0  # attention dropout inside the backbone
# Backbone attention kernel: auto (torch's choice), cudnn, flash, efficient, math. Same result;
# speed differs by device and sequence length (docs/PERFORMANCE.md).
_C.MODEL.SDPA_BACKEND = "auto"
_C.MODEL.GLOBAL_LOCAL = True  # PIFE: global = reduce([cls ; mean(patches)]) per modality
_C.MODEL.HDM = True  # DeMo's hierarchical decoupling module (seven query attentions)
_C.MODEL.ATM = True  # DeMo's attention-triggered mixture of experts (needs HDM)
_C.MODEL.HEAD = 4  # ATM heads (must divide the feature width)
# The un-fused features' ID and triplet losses: True, one BNNeck head on the concatenation
# [R; N; T]; False, one head per modality on its own global feature. Evaluation's "ori" is
# [R; N; T] either way. DeMo's MODEL.DIRECT 1 / 0 still loads as True / False.
_C.MODEL.JOINT_ORI_HEAD = True
_C.MODEL.ID_LOSS_WEIGHT = 0.25  # weight of each label-smoothed cross-entropy term
_C.MODEL.TRIPLET_LOSS_WEIGHT = 1.0  # weight of each batch-hard triplet term
_C.MODEL.LABEL_SMOOTH = 0.1  # label-smoothing epsilon of the ID loss
_C.MODEL.NO_MARGIN = True  # soft-margin triplet (log(1 + exp(ap - an))) instead of SOLVER.MARGIN
_C.MODEL.USE_SDTPS = False  # SDTPS fusion head; exclusive: turns HDM and ATM off
_C.MODEL.SDTPS_SPARSE_RATIO = 0.5  # fraction of patches kept by TokenSparse, in (0, 1)
_C.MODEL.SDTPS_AGGR_RATIO = 0.4  # TokenAggregation outputs int(N * AGGR * SPARSE) tokens, in (0, 1]
_C.MODEL.SDTPS_BETA = 0.25  # s = (1 - 2 beta) s_pred + beta (s_a + s_b + 2 s_self)
_C.MODEL.SDTPS_USE_GUMBEL = False  # Gumbel-softmax decision matrix in training (SDTPS_GUMBEL_MODE)
# With SDTPS_USE_GUMBEL True, what the Gumbel noise g does in training (evaluation is always the
# plain top-K of the scores s; a mode other than ste with SDTPS_USE_GUMBEL False is an error):
#   ste: the same top-K as without Gumbel, so the training forward is unchanged; the backward gives
#        the kept patches' scores a gradient through softmax((s + g) / tau) (straight-through).
#   sample: the kept set is the top-K of s + g, a fresh draw every step (K patches sampled without
#        replacement from softmax(s)); same straight-through backward. s lies in [0, 1 + 2 beta],
#        so noise of scale 1 reshuffles most of the selection, and tau does not change which
#        patches are kept (only how sharp the backward is).
#   soft: no hard choice in training: all N patches enter the aggregation, weighted by a relaxed
#        top-K of (s + g) / tau (weights in (0, 1) summing to K); the extra token pools the
#        patches by 1 - that weight. Tends to `sample` as tau -> 0; at tau 1 most weights are far
#        from 0 and 1, so training mixes in patches that evaluation drops.
# Which to try first: the defaults (Gumbel off), then SDTPS_SCORE_GRAD. In docs/ACCURACY.md (3
# seeds on the study protocol, bf16 and fp16) ste, SDTPS_SCORE_GRAD and loss weight 2 stay within
# the seed spread of the defaults, while sample and soft lose 4-7 mAP points on the fused feature
# in both precisions: try those last.
_C.MODEL.SDTPS_GUMBEL_MODE = "ste"
_C.MODEL.SDTPS_GUMBEL_TAU = 1.0  # Gumbel temperature (ste / sample: of the backward; soft: weights)
_C.MODEL.SDTPS_SCORE_GRAD = False  # True: the cosine guide scores carry gradient (backbone, PIFE)
_C.MODEL.SDTPS_LOSS_WEIGHT = 1.0  # scale of the SDTPS (ID + triplet) loss pair
# Tiny backbones (tiny_clip / tiny_vit) for CPU tests and the demo; ignored by the ViT-B/16 types.
_C.MODEL.TINY = CN()
_C.MODEL.TINY.WIDTH = 96  # transformer width
_C.MODEL.TINY.DEPTH = 2  # transformer blocks
_C.MODEL.TINY.HEADS = 4  # attention heads
_C.MODEL.TINY.EMBED_DIM = 64  # output width after the CLIP-style projection (tiny_clip only)
_C.MODEL.TINY.PATCH_SIZE = 8  # patch size of the tiny backbones

# ------------------------------------------------------------------------------------------------
# INPUT
# ------------------------------------------------------------------------------------------------
_C.INPUT = CN()
_C.INPUT.MODALITIES = ("RGB", "NI", "TI")  # modality names; batches carry images by these
_C.INPUT.SIZE_TRAIN = (256, 128)  # (H, W) of training images
_C.INPUT.SIZE_TEST = (256, 128)  # (H, W) of test images
_C.INPUT.FLIP_PROB = 0.5  # horizontal-flip probability (DeMo's INPUT.PROB still loads)
_C.INPUT.RE_PROB = 0.5  # random-erasing probability (timm RandomErasing, pixel mode)
_C.INPUT.PIXEL_MEAN = (0.5, 0.5, 0.5)  # normalisation mean
_C.INPUT.PIXEL_STD = (0.5, 0.5, 0.5)  # normalisation std
_C.INPUT.PADDING = 10  # zero padding before the random crop
_C.INPUT.PAIRED_AUG = False  # one augmentation draw per triplet (False: per modality)
# Modality dropout: the probability that a training sample loses modalities (zeroed after
# normalisation, as missing modalities are at test time); 0 = off, the DeMo recipe, and what to
# use: on the synthetic study 0.25 and 0.5 lowered every setting, missing ones included
# (docs/ACCURACY.md); on real data it is unmeasured.
_C.INPUT.MODALITY_DROPOUT = 0.0
# The sets that may be dropped, each "NAME" or "NAME+NAME" of INPUT.MODALITIES, drawn uniformly;
# () = every single modality and every pair. Never all of them.
_C.INPUT.MODALITY_DROPOUT_SETS = ()

# ------------------------------------------------------------------------------------------------
# DATASETS
# ------------------------------------------------------------------------------------------------
_C.DATASETS = CN()
_C.DATASETS.NAMES = "RGBNT201"  # a dataset registered in data/datasets/ (one file per name)
_C.DATASETS.ROOT_DIR = "data_root"  # folder holding the dataset folders
_C.DATASETS.VAL_FRACTION = 0.0  # fraction of train ids held out as a validation split (0 = none)
_C.DATASETS.SKIP_BAD = False  # skip (and count in the log) unreadable samples instead of stopping

# ------------------------------------------------------------------------------------------------
# DATALOADER
# ------------------------------------------------------------------------------------------------
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 8  # loader worker processes per rank
_C.DATALOADER.SAMPLER = "softmax_triplet"  # softmax_triplet (P x K ids) or softmax
_C.DATALOADER.NUM_INSTANCE = 8  # K: images per identity in a batch
_C.DATALOADER.PREFETCH_FACTOR = 4  # batches prefetched by each worker
# Host-to-device path: ring (workers write into shared page-locked batch slots, data/ring.py) or
# plain (a standard DataLoader with pinned memory, then a side-stream prefetch). Same batches; on
# an H200 plain trains as fast but extracts 23 % slower (docs/PERFORMANCE.md): ring is the default.
_C.DATALOADER.PIPELINE = "ring"

# ------------------------------------------------------------------------------------------------
# SOLVER
# ------------------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.OPTIMIZER_NAME = "Adam"  # Adam, AdamW or SGD
_C.SOLVER.MAX_EPOCHS = 50  # training epochs
_C.SOLVER.BASE_LR = 3.5e-4  # learning rate of the new (non-backbone) modules
_C.SOLVER.BACKBONE_LR = 5e-6  # learning rate of every backbone tensor, biases included
_C.SOLVER.BIAS_LR_FACTOR = 2.0  # bias LR = BASE_LR x this, for the new modules
_C.SOLVER.MOMENTUM = 0.9  # SGD momentum
_C.SOLVER.WEIGHT_DECAY = 1e-4  # weight decay of weights
_C.SOLVER.WEIGHT_DECAY_BIAS = 1e-4  # weight decay of biases
_C.SOLVER.MARGIN = 0.3  # triplet margin when MODEL.NO_MARGIN is False
_C.SOLVER.WARMUP_EPOCHS = 10  # linear warm-up length in epochs (DeMo's WARMUP_ITERS still loads)
_C.SOLVER.WARMUP_FACTOR = 0.1  # warm-up starts at this x BASE_LR (absolute, every group)
_C.SOLVER.MIN_LR_FACTOR = 0.001  # cosine floor = this x BASE_LR (absolute, every group)
_C.SOLVER.LR_NOISE = True  # DeMo's multiplicative LR noise (67 %, seeded 42 + epoch)
_C.SOLVER.IMS_PER_BATCH = 64  # global batch (triplets) over all ranks = P x K
_C.SOLVER.SEED = 1111  # global seed (model init, sampler, augmentation)
_C.SOLVER.AMP = "auto"  # auto (bf16/fp16 on GPU, off on CPU), bf16, fp16, off
_C.SOLVER.COMPILE = False  # torch.compile the model, for training and evaluation
_C.SOLVER.COMPILE_MODE = "default"  # torch.compile mode (reduce-overhead: CUDA graphs)
_C.SOLVER.DDP_BUCKET_MB = 100.0  # DDP gradient buckets (MB); under torch.compile also graph pieces
_C.SOLVER.DDP_GRAD_DTYPE = "float32"  # DDP all-reduce: float32 or bfloat16 (half the bytes)
_C.SOLVER.GRAD_CLIP = 0.0  # clip the gradient norm to this (0 = off)
_C.SOLVER.CHECKPOINT_PERIOD = 10  # model_{epoch:04d}.pth every N epochs
_C.SOLVER.KEEP_CHECKPOINTS = 2  # keep the last N model_{epoch}.pth files
_C.SOLVER.LOG_PERIOD = 10  # log every N iterations
_C.SOLVER.EVAL_PERIOD = 10  # evaluate every N epochs (and after the last); 0 = only at the end

# ------------------------------------------------------------------------------------------------
# TEST
# ------------------------------------------------------------------------------------------------
_C.TEST = CN()
_C.TEST.IMS_PER_BATCH = 128  # global test batch
_C.TEST.WEIGHT = ""  # checkpoint to evaluate (ours, a bare state dict, or DeMo's)
_C.TEST.RETURN_PATTERN = 3  # 1: [R;N;T]; 2: fused (ATM/SDTPS); 3: both (PATTERN_NAMES)
_C.TEST.ALL_PATTERNS = True  # evaluate every available return_pattern in one pass
_C.TEST.FEAT_NORM = True  # L2-normalise features before ranking
_C.TEST.RE_RANKING = False  # k-reciprocal re-ranking
_C.TEST.RE_RANKING_K1 = 20  # re-ranking k1
_C.TEST.RE_RANKING_K2 = 6  # re-ranking k2
_C.TEST.RE_RANKING_LAMBDA = 0.3  # re-ranking lambda
# Modalities missing at test time, from query and gallery alike: names of INPUT.MODALITIES, e.g.
# ("TI",) or ("RGB", "NI"), zeroed after normalisation; () = nothing missing. DeMo's TEST.MISS
# letters (r, n, t: the first, second, third of INPUT.MODALITIES) still load.
_C.TEST.MISSING_MODALITIES = ()
# Any-to-any evaluation: the modalities the query / the gallery comes with (names of
# INPUT.MODALITIES; () = all of them). The others are zeroed after normalisation, as
# TEST.MISSING_MODALITIES does on both sides; that key is the shorthand for one set on both sides
# and cannot be combined with these.
_C.TEST.QUERY_MODALITIES = ()
_C.TEST.GALLERY_MODALITIES = ()
_C.TEST.MAX_RANK = 50  # longest CMC curve computed
_C.TEST.VIS_TOKENS = False  # write SDTPS token-selection pictures to TensorBoard at evaluation

_C.OUTPUT_DIR = "output"  # run folder: config.yaml, log.txt, metrics.json, events, checkpoints


def get_cfg():
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
