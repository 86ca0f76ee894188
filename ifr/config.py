"""Config keys of the project. ``add_ifr_config(cfg)`` adds every key on top of detectron2's
defaults; each key says what it means and, for a symbol of docs/method.md, which symbol it is.

The keys every system reads are under ``MODEL.VIS`` (sizes, class count, loss and matching
weights, point sampling, ``TEST.*`` inference); each system's own keys under its node
(``MODEL.IFR``, ``MODEL.M2F_VIS``, ``MODEL.IFC``, ``MODEL.VISTR``, ``MODEL.TEVIT`` with
``MODEL.MSGSHIFT``). The defaults are IFR's paper recipe (docs/method.md, "Recipe");
each other system's configs set what its own recipe changes. ``configs/Base-IFR.yaml``
only sets Detectron2's own keys that the recipe changes (solver, backbone). A yaml sets a
key only to differ from what it inherits, or says why it restates it."""

import difflib
import re
from typing import Optional, Sequence

from detectron2.config import CfgNode as CN

# The focal loss's alpha and gamma (Lin et al.), the same in every system that uses one
# (IFR's class loss and cost, IFC's mask loss, TeViT's class loss and cost): the defaults
# of MODEL.VIS.FOCAL_ALPHA/GAMMA and of the loss functions.
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


def add_ifr_config(cfg: CN) -> None:
    _add_model_config(cfg)
    _add_ifr_config(cfg)
    _add_backbone_config(cfg)
    _add_input_config(cfg)
    _add_solver_config(cfg)
    _add_test_config(cfg)
    _add_datasets_config(cfg)
    _add_evaluation_config(cfg)
    _add_m2f_vis_config(cfg)
    _add_ifc_config(cfg)
    _add_vistr_config(cfg)
    _add_tevit_config(cfg)
    _add_dataloader_config(cfg)


def _add_model_config(cfg: CN) -> None:
    # The meta-architecture: "IFR", or the Mask2Former-VIS baseline (docs/method.md, Sec. 7).
    cfg.MODEL.META_ARCHITECTURE = "IFR"
    # Refuse pickled (non-tensor) checkpoint content unless the user opts in: weights from
    # outside are untrusted. Detectron2 .pkl model-zoo files need this set to True.
    cfg.MODEL.WEIGHTS_ALLOW_PICKLE = False
    # Evaluation and the demo refuse MODEL.WEIGHTS that leave model tensors unloaded (the
    # wrong checkpoint, another NUM_CLASSES): True runs them at their random initialisation.
    # Training ignores it (COCO Mask2Former weights leave IFR-only modules to initialise).
    cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = False
    # Compute precision of backbone, pixel decoder and transformer decoder, in training and
    # inference, on any device: "fp32", "fp16" or "bf16" (torch.autocast in that dtype).
    # Losses, Hungarian matching, point sampling and mask post-processing always run in
    # float32. Training with "fp16" uses Detectron2's AMPTrainer (GradScaler, CUDA only);
    # "bf16" needs no loss scaling. Detectron2's SOLVER.AMP.ENABLED keeps its meaning where
    # this is "fp32": fp16 training on CUDA (AMPTrainer), fp32 inference; a non-"fp32"
    # value here takes precedence over it.
    cfg.MODEL.PRECISION = "fp32"

    # Keys every system reads: model size, class count, loss and matching weights, point
    # sampling (here) and inference (MODEL.VIS.TEST). Each system's own keys have their own
    # node (MODEL.IFR, MODEL.M2F_VIS, MODEL.IFC, MODEL.VISTR, MODEL.TEVIT).
    cfg.MODEL.VIS = CN()
    # K, number of classes (40 in YouTube-VIS 2019 and 2021).
    cfg.MODEL.VIS.NUM_CLASSES = 40
    cfg.MODEL.VIS.NUM_QUERIES = 100  # N, clip-level queries (200 in the "(200)" rows)
    cfg.MODEL.VIS.HIDDEN_DIM = 256  # d, hidden size of queries and attention, Eq. (1)
    cfg.MODEL.VIS.NHEADS = 8  # attention heads of every decoder attention
    cfg.MODEL.VIS.DIM_FEEDFORWARD = 2048  # hidden size of the decoder's FFNs
    # L, number of decoder layers (IFR: layer i reads feature scale i mod 3). Mask2Former
    # users: its MODEL.MASK_FORMER.DEC_LAYERS counts the prediction from the initial
    # queries as a layer, so Mask2Former's 10 is 9 here (docs/method.md, "DEC_LAYERS").
    cfg.MODEL.VIS.DEC_LAYERS = 9
    # Layer norm before (True) or after (False) each attention/FFN, as Mask2Former.
    cfg.MODEL.VIS.PRE_NORM = False
    # Project the pixel decoder's features even when their channels already equal d.
    cfg.MODEL.VIS.ENFORCE_INPUT_PROJ = False
    cfg.MODEL.VIS.DROPOUT = 0.0  # dropout in the decoder's attention and FFN layers
    # Padded input size is a multiple of this (at least the backbone's own divisibility).
    cfg.MODEL.VIS.SIZE_DIVISIBILITY = 32
    cfg.MODEL.VIS.CLASS_WEIGHT = 2.0  # lambda_c, class term of Eq. (4)-(5)
    cfg.MODEL.VIS.MASK_WEIGHT = 5.0  # lambda_m, mask BCE term of Eq. (4)-(5)
    cfg.MODEL.VIS.DICE_WEIGHT = 5.0  # lambda_D (lambda_d), Dice term of Eq. (4)-(5)
    # Class loss of IFR and Mask2Former-VIS: "" (the system's own: "focal" for IFR, Eq. 5;
    # "softmax_ce" for Mask2Former-VIS), "focal" (K sigmoid logits, focal loss) or
    # "softmax_ce" (K + 1 logits, cross-entropy with a no-object class weighted by
    # MODEL.M2F_VIS.NO_OBJECT_WEIGHT). Swapping them separates the decoder's effect from the
    # class loss's (docs/experiments.md); the other systems have their own and refuse it.
    cfg.MODEL.VIS.CLASS_LOSS = ""
    # Class term of the matching cost of IFR and Mask2Former-VIS: "probability" (-lambda_c
    # p_hat, Eq. 4 as the paper writes it) or "focal" (lambda_c times the focal loss of the
    # target class minus its negative, with FOCAL_ALPHA/GAMMA, as Deformable DETR and
    # SeqFormer match; sigmoid class scores only). docs/experiments.md measures both.
    cfg.MODEL.VIS.CLASS_COST = "probability"
    cfg.MODEL.VIS.FOCAL_ALPHA = FOCAL_ALPHA  # alpha of the focal loss L_cls, Eq. (5)
    cfg.MODEL.VIS.FOCAL_GAMMA = FOCAL_GAMMA  # gamma of the focal loss L_cls, Eq. (5)
    # Supervise every decoder layer and the prediction from the initial queries.
    cfg.MODEL.VIS.DEEP_SUPERVISION = True
    # Point sampling of the mask losses and costs (Mask2Former): points per mask.
    cfg.MODEL.VIS.TRAIN_NUM_POINTS = 112 * 112
    # Candidate points drawn per kept point, before importance sampling.
    cfg.MODEL.VIS.OVERSAMPLE_RATIO = 3.0
    # Share of the kept points chosen where the prediction is most uncertain.
    cfg.MODEL.VIS.IMPORTANCE_SAMPLE_RATIO = 0.75

    cfg.MODEL.PIXEL_DECODER = CN()
    # Registered name (PIXEL_DECODER_REGISTRY): the multi-scale deformable-attention one.
    cfg.MODEL.PIXEL_DECODER.NAME = "MSDeformAttnPixelDecoder"
    # Backbone levels the pixel decoder reads (strides 4, 8, 16, 32).
    cfg.MODEL.PIXEL_DECODER.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Levels encoded by the deformable-attention encoder (strides 8/16/32).
    cfg.MODEL.PIXEL_DECODER.DEFORMABLE_IN_FEATURES = ["res3", "res4", "res5"]
    # Channels of the encoder and of the multi-scale features the decoder reads.
    cfg.MODEL.PIXEL_DECODER.CONVS_DIM = 256
    cfg.MODEL.PIXEL_DECODER.MASK_DIM = 256  # channels of the per-frame mask features
    cfg.MODEL.PIXEL_DECODER.NORM = "GN"  # normalisation of the lateral/output convs
    cfg.MODEL.PIXEL_DECODER.ENC_LAYERS = 6  # deformable-attention encoder layers
    cfg.MODEL.PIXEL_DECODER.NHEADS = 8  # heads of the deformable attention
    cfg.MODEL.PIXEL_DECODER.N_POINTS = 4  # sampling points per head and level
    cfg.MODEL.PIXEL_DECODER.DIM_FEEDFORWARD = 1024  # hidden size of the encoder's FFNs
    cfg.MODEL.PIXEL_DECODER.DROPOUT = 0.0  # dropout in the encoder
    cfg.MODEL.PIXEL_DECODER.COMMON_STRIDE = 4  # stride of the mask features
    # Deformable-attention implementation: "triton" (fused kernels), "pytorch" (grid_sample,
    # the reference) or "auto" (triton on CUDA when it imports, pytorch elsewhere).
    cfg.MODEL.PIXEL_DECODER.MSDA_IMPL = "auto"

    cfg.MODEL.TRANSFORMER_DECODER = CN()
    # Registered name (TRANSFORMER_DECODER_REGISTRY) of the transformer decoder.
    cfg.MODEL.TRANSFORMER_DECODER.NAME = "IFRTransformerDecoder"


def _add_backbone_config(cfg: CN) -> None:
    # Swin Transformer; defaults are Swin-T. Names as in Mask2Former so configs carry over.
    cfg.MODEL.SWIN = CN()
    cfg.MODEL.SWIN.PRETRAIN_IMG_SIZE = 224  # image size of the ImageNet pretraining
    cfg.MODEL.SWIN.PATCH_SIZE = 4  # patch embedding stride (stride of res2)
    cfg.MODEL.SWIN.EMBED_DIM = 96  # channels of the first stage
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 6, 2]  # blocks per stage
    cfg.MODEL.SWIN.NUM_HEADS = [3, 6, 12, 24]  # attention heads per stage
    cfg.MODEL.SWIN.WINDOW_SIZE = 7  # side of the attention window, in patches
    cfg.MODEL.SWIN.MLP_RATIO = 4.0  # MLP hidden size / channels
    cfg.MODEL.SWIN.QKV_BIAS = True  # bias in the query/key/value projections
    cfg.MODEL.SWIN.QK_SCALE = None  # attention scale; None: head_dim ** -0.5
    cfg.MODEL.SWIN.DROP_RATE = 0.0  # dropout after the patch embedding and MLPs
    cfg.MODEL.SWIN.ATTN_DROP_RATE = 0.0  # dropout on the attention weights
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.3  # stochastic depth, largest rate (last block)
    cfg.MODEL.SWIN.APE = False  # absolute position embedding on the patches
    cfg.MODEL.SWIN.PATCH_NORM = True  # layer norm after the patch embedding
    # Stages returned, as res2..res5 (strides 4, 8, 16, 32).
    cfg.MODEL.SWIN.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # Gradient checkpointing of the blocks (less memory, slower training).
    cfg.MODEL.SWIN.USE_CHECKPOINT = False


def _add_dataloader_config(cfg: CN) -> None:
    # Read every frame's header (size only, in parallel) when a data loader is built, and
    # refuse frames that are unreadable or whose size differs from the json's
    # height x width; False skips it for very large sets on slow storage.
    cfg.DATALOADER.CHECK_FRAME_HEADERS = True


def _add_input_config(cfg: CN) -> None:
    # Channel order of the frames given to the model ("RGB" or "BGR").
    cfg.INPUT.FORMAT = "RGB"
    # Frames per training clip (the paper: 2), drawn around a random reference frame.
    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    # The clip's other frames lie within +-SAMPLING_FRAME_RANGE frames of the reference.
    cfg.INPUT.SAMPLING_FRAME_RANGE = 20
    # Shuffle the sampled frames instead of keeping them in video order.
    cfg.INPUT.SAMPLING_FRAME_SHUFFLE = False
    cfg.INPUT.MIN_SIZE_TRAIN = (360, 480)  # the paper: shorter side 360 or 480
    # "choice": one of MIN_SIZE_TRAIN per clip (the mapper draws once for all frames).
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
    # Longer side cap, Detectron2's default as Mask2Former-VIS: 720x1280 at 480 is 480x853.
    cfg.INPUT.MAX_SIZE_TRAIN = 1333
    # Shorter side at test time: 360 for ResNets; the Swin configs set 480.
    cfg.INPUT.MIN_SIZE_TEST = 360
    # Longer side cap at test time (Detectron2's default, as Mask2Former-VIS); it also
    # caps every TTA size (MODEL.VIS.TEST.TTA.MIN_SIZES).
    cfg.INPUT.MAX_SIZE_TEST = 1333
    # "flip_by_clip": one horizontal flip decision for all frames of a clip; "none".
    cfg.INPUT.RANDOM_FLIP = "flip_by_clip"
    # VisTR's photometric distortion (brightness, contrast, saturation, hue, channel order,
    # each with probability 1/2), drawn anew for every frame (ifr/data/augmentation.py).
    cfg.INPUT.PHOTOMETRIC_DISTORTION = False
    # VisTR's random size crop, before the resize to MIN_SIZE_TRAIN: the shorter side
    # resized to one of PRE_RESIZE, then a crop of sides drawn in [MIN_SIZE, MAX_SIZE].
    cfg.INPUT.RANDOM_SIZE_CROP = CN()
    cfg.INPUT.RANDOM_SIZE_CROP.ENABLED = False  # off: no crop (VisTR's recipe turns it on)
    cfg.INPUT.RANDOM_SIZE_CROP.PRE_RESIZE = (400, 500, 600)  # shorter sides, one drawn
    cfg.INPUT.RANDOM_SIZE_CROP.MIN_SIZE = 384  # smallest crop side (a shorter image: whole)
    cfg.INPUT.RANDOM_SIZE_CROP.MAX_SIZE = 600  # largest crop side


def _add_solver_config(cfg: CN) -> None:
    cfg.SOLVER.OPTIMIZER = "ADAMW"  # "ADAMW" or "SGD"
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1  # the paper: backbone learning rate x0.1
    # Weight decay of the query and level embeddings (norm layers: SOLVER.WEIGHT_DECAY_NORM).
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    # Gradient clipping of the whole model by its global 2-norm, as Mask2Former-VIS.
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"  # one norm over all parameters
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.01  # largest gradient norm
    cfg.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0  # p of the p-norm


def _add_ifr_config(cfg: CN) -> None:
    """Keys of the IFR decoder and criterion that the other systems do not have."""
    cfg.MODEL.IFR = CN()
    # lambda_e of Eq. (6)-(7): weight of the cross-frame mask loss; 0 turns it off.
    cfg.MODEL.IFR.LAMBDA_E = 0.3
    # Run the step of the frame recurrence (Eq. 1-3, run L x T times in sequence) through
    # torch.compile; the same results up to float rounding. The first call of each input
    # shape compiles (seconds to minutes); it pays off on GPUs, where the eager step is
    # bound by kernel launches.
    cfg.MODEL.IFR.COMPILE_FRAME_STEP = False
    # torch.compile mode of that step: "default", "reduce-overhead" (CUDA graphs: one
    # replay per step instead of its launches) or "max-autotune".
    cfg.MODEL.IFR.COMPILE_MODE = "default"
    # IFR's decoder: one class head for every prediction (True, Mask2Former's), or one per
    # decoder layer and the initial queries (False). The paper does not say.
    cfg.MODEL.IFR.SHARED_CLASS_HEAD = True
    # IFR's temporal cross-attention (clip update): a constant added to the attention logits
    # where a clip query attends to its own slot's frame queries; 0 (the paper) starts it
    # uniform over all N x T frame queries (about 1/N of the weight on its own slot).
    cfg.MODEL.IFR.TEMPORAL_SLOT_BIAS = 0.0
    # IFR: factor of a mask loss on the clip-level queries (0, the paper: none). With w > 0
    # each clip query's own mask embedding also predicts every frame's mask of its matched
    # instance, weighted w * lambda_m (BCE) and w * lambda_D (Dice), so the last layer's
    # clip update, which otherwise feeds the class head only, gets gradient from the masks.
    cfg.MODEL.IFR.CLIP_MASK_WEIGHT = 0.0
    cfg.MODEL.IFR.TEST = CN()
    # Diagnostic (IFR decoder, inference only): False replaces Q_i^{t-1} by Q_i in
    # Eq. (1), so frame t's queries no longer depend on frame t-1 (recurrence off). It
    # measures what the recurrence contributes to a trained model; training ignores it.
    cfg.MODEL.IFR.TEST.RECURRENCE = True


def _add_test_config(cfg: CN) -> None:
    # Inference (docs/method.md, Sec. 3). Checked once, by ifr.inference.InferenceOptions.
    cfg.MODEL.VIS.TEST = CN()
    cfg.MODEL.VIS.TEST.TOP_K = 10  # k, (query, class) pairs kept per video (0: no cap)
    # Keep only pairs whose probability is above this (IFC: 0.01); 0 keeps every pair.
    cfg.MODEL.VIS.TEST.SCORE_THRESHOLD = 0.0
    # Keep only queries whose most likely of the K + 1 classes is an object, per decoded
    # video or clip (IFC's inference; softmax class heads only).
    cfg.MODEL.VIS.TEST.OBJECTS_ONLY = False
    # "video": the whole video in one pass (default, as the paper);
    # "clip": clips of CLIP_LENGTH frames linked across clips (appendix A.1).
    cfg.MODEL.VIS.TEST.MODE = "video"
    cfg.MODEL.VIS.TEST.CLIP_LENGTH = 5  # T of per-clip inference (the paper: 2 and 5)
    # Frames shared by consecutive clips (< CLIP_LENGTH); IFC's stride 1 is T - 1.
    cfg.MODEL.VIS.TEST.CLIP_OVERLAP = 4
    # Clip tracking (IFC): a query and a track whose mean soft mask IoU on the shared
    # frames is at most this are not linked (the query starts a new track); IFC's 0.05.
    cfg.MODEL.VIS.TEST.CLIP_MIN_IOU = 0.05
    # A clip keeps the queries it predicts as objects: highest class probability at least
    # this (IFC keeps those whose most likely class is not "no object"). 0.05, measured: the
    # tiny IFR's sigmoid scores of true objects are often below 0.5, and with 0.5 clip AP was
    # 25.8 (T=5) against 48.4 for the whole video; with 0.05, 49.2 (README, per-clip
    # inference). 0 keeps every query.
    cfg.MODEL.VIS.TEST.CLIP_MIN_SCORE = 0.05
    # Frames per chunk through backbone + pixel decoder and through mask upsampling;
    # bounds device memory for long videos.
    cfg.MODEL.VIS.TEST.FRAME_CHUNK = 16
    # Where per-frame features wait between decoder layers ("cpu" bounds device memory
    # for long videos; "same" keeps them on the model's device).
    cfg.MODEL.VIS.TEST.FEATURE_STORAGE = "same"
    # dtype of the stored features: "float16" halves their memory (about 18 MB per
    # 360x640 frame in float32 with R50); the decoder computes in the model's dtype.
    cfg.MODEL.VIS.TEST.FEATURE_STORAGE_DTYPE = "float32"
    # A pixel belongs to a mask where its (averaged) mask probability is above this.
    cfg.MODEL.VIS.TEST.MASK_THRESHOLD = 0.5
    # Leave out a prediction whose mask is empty in every frame (VisTR's inference).
    cfg.MODEL.VIS.TEST.DROP_EMPTY = False
    # Test-time augmentation (paper Sec. 3.2). Detectron2's TEST.AUG.* (image TTA) is
    # refused: these are the keys of video TTA.
    cfg.MODEL.VIS.TEST.TTA = CN()
    cfg.MODEL.VIS.TEST.TTA.ENABLED = False  # run every MIN_SIZES (and flips) and fuse them
    # Shorter sides of the n runs (the paper: n = 4), each resized from the original
    # frames with the longer side capped at INPUT.MAX_SIZE_TEST.
    cfg.MODEL.VIS.TEST.TTA.MIN_SIZES = [360, 480, 600, 720]
    cfg.MODEL.VIS.TEST.TTA.FLIP = False  # also run every size flipped horizontally
    # Index into MIN_SIZES of the pivot R_p (the paper picks one at random).
    cfg.MODEL.VIS.TEST.TTA.PIVOT = 0


def _add_m2f_vis_config(cfg: CN) -> None:
    """Keys of the Mask2Former-VIS baseline (``MODEL.META_ARCHITECTURE "VideoMaskFormer"``)
    that the shared ``MODEL.VIS`` keys do not cover.
    ``MODEL.VIS.DEC_LAYERS`` counts decoder layers without the prediction from the initial
    queries: Mask2Former-VIS's ``MODEL.MASK_FORMER.DEC_LAYERS: 10`` is ``MODEL.VIS.DEC_LAYERS:
    9`` here (9 layers, 10 predictions, 9 of them auxiliary)."""
    cfg.MODEL.M2F_VIS = CN()
    # Weight of the "no-object" class in the softmax cross-entropy (Mask2Former's
    # NO_OBJECT_WEIGHT / eos_coef): the last entry of the criterion's empty_weight.
    cfg.MODEL.M2F_VIS.NO_OBJECT_WEIGHT = 0.1


def _add_vistr_config(cfg: CN) -> None:
    """Keys of VisTR (``MODEL.META_ARCHITECTURE "VisTR"``, Wang et al., CVPR 2021). Its
    defaults are the official recipe (R50/R101, 36 frames, 10 instances per frame); the
    class count is ``MODEL.VIS.NUM_CLASSES``, inference ``MODEL.VIS.TEST.*``."""
    cfg.MODEL.VISTR = CN()
    # T, the fixed clip length: the decoder has NUM_FRAMES * NUM_INSTANCES queries and
    # trains on clips of exactly this many frames (INPUT.SAMPLING_FRAME_NUM); a shorter
    # test clip is filled to T by repeating its frames, as VisTR's inference.
    cfg.MODEL.VISTR.NUM_FRAMES = 36
    # n, instance slots per frame: query t * n + i predicts instance i in frame t.
    cfg.MODEL.VISTR.NUM_INSTANCES = 10
    # d, width of the transformer (divisible by 6 for the three sine halves of the 3-D
    # position encoding, and by NHEADS).
    cfg.MODEL.VISTR.HIDDEN_DIM = 384
    cfg.MODEL.VISTR.NHEADS = 8  # heads of every encoder/decoder attention
    cfg.MODEL.VISTR.DIM_FEEDFORWARD = 2048  # hidden size of the transformer's FFNs
    cfg.MODEL.VISTR.ENC_LAYERS = 6  # encoder layers over the T * h * w tokens
    cfg.MODEL.VISTR.DEC_LAYERS = 6  # decoder layers of the instance-sequence queries
    cfg.MODEL.VISTR.DROPOUT = 0.1  # dropout in the transformer's attention and FFNs
    cfg.MODEL.VISTR.PRE_NORM = False  # pre-LayerNorm blocks (DETR's --pre_norm)
    # Loss weights (VisTR/DETR): cross-entropy, box L1, box GIoU, mask focal, mask Dice.
    cfg.MODEL.VISTR.CLASS_WEIGHT = 1.0  # cross-entropy over the N * T query slots
    cfg.MODEL.VISTR.BBOX_WEIGHT = 5.0  # L1 of the normalised (cx, cy, w, h) boxes
    cfg.MODEL.VISTR.GIOU_WEIGHT = 2.0  # 1 - GIoU of the boxes
    cfg.MODEL.VISTR.MASK_WEIGHT = 1.0  # sigmoid focal loss of the masks
    cfg.MODEL.VISTR.DICE_WEIGHT = 1.0  # Dice loss of the masks
    # Weight of the "no-object" class in the cross-entropy (DETR's eos_coef).
    cfg.MODEL.VISTR.NO_OBJECT_WEIGHT = 0.1
    # Instance-sequence matching cost weights (class, box L1, box overlap).
    cfg.MODEL.VISTR.COST_CLASS = 1.0  # -p(c)
    cfg.MODEL.VISTR.COST_BBOX = 5.0  # box L1
    cfg.MODEL.VISTR.COST_GIOU = 2.0  # -GIoU, or -IoU with COST_OVERLAP "iou"
    # Frames each cost term is averaged over: "all" T (the official code: an absent frame
    # has box target 0 and class term 0) or "present" (those where the target is).
    cfg.MODEL.VISTR.COST_FRAMES = "all"
    # Box overlap of the matching cost: "iou" (the official code's multi_iou) or "giou".
    cfg.MODEL.VISTR.COST_OVERLAP = "iou"
    # Mask terms of the matching cost (sigmoid CE and Dice of the mask sequences); VisTR
    # matches on class and boxes only, so 0 (the recipe) leaves them out.
    cfg.MODEL.VISTR.COST_MASK = 0.0  # mask sigmoid cross-entropy
    cfg.MODEL.VISTR.COST_DICE = 0.0  # 1 - Dice of the masks
    # Points sampled per frame for the mask matching costs (used when they are not 0).
    cfg.MODEL.VISTR.COST_NUM_POINTS = 12544
    # Class and box losses at every decoder layer too (DETR's aux_loss; masks: last only).
    cfg.MODEL.VISTR.DEEP_SUPERVISION = True
    # A slot's class scores at inference: "vote" (the official inference: one class per
    # slot, the most frequent per-frame argmax, scored by the mean over frames of the
    # per-frame top probability) or "mean" (every class, its probability averaged over
    # frames; the top-k (slot, class) pairs are kept).
    cfg.MODEL.VISTR.SLOT_SCORE = "vote"


def _add_ifc_config(cfg: CN) -> None:
    """Keys of IFC (Hwang et al., NeurIPS 2021; ``MODEL.META_ARCHITECTURE "IFC"``) that the
    other systems do not have; it reads the shared ``MODEL.VIS`` keys too (DEC_LAYERS is
    IFC's decoder layers). Defaults are the
    official IFC code's (``add_ifc_config``, ``base_ytvis.yaml``)."""
    cfg.MODEL.IFC = CN()
    # M, memory tokens per frame ("memory bus", NUM_MEMORY_BUS in IFC's code).
    cfg.MODEL.IFC.NUM_MEMORY_TOKENS = 8
    # Encoder blocks (encode-receive + gather-communicate) on the stride-32 features.
    cfg.MODEL.IFC.ENC_LAYERS = 3
    # Weight of the "no-object" class in the softmax cross-entropy (IFC's eos_coef).
    cfg.MODEL.IFC.NO_OBJECT_WEIGHT = 0.1
    # Mask losses on dense masks at 1/MASK_STRIDE of the padded input (targets resized
    # bilinearly, predictions upsampled to them), as IFC.
    cfg.MODEL.IFC.MASK_STRIDE = 4
    # Matching cost on dense masks at 1/MATCH_STRIDE of the padded input, as IFC.
    cfg.MODEL.IFC.MATCH_STRIDE = 4


def _add_tevit_config(cfg: CN) -> None:
    """Keys of TeViT (Yang et al., CVPR 2022; ``MODEL.META_ARCHITECTURE "TeViT"``): its
    backbone MsgShifT (``MODEL.MSGSHIFT``) and its spatiotemporal query interaction head
    (``MODEL.TEVIT``). Defaults are the official ``tevit_msgshift`` recipe; the class count
    is ``MODEL.VIS.NUM_CLASSES``, the queries ``MODEL.VIS.NUM_QUERIES``, inference
    ``MODEL.VIS.TEST.*``."""
    cfg.MODEL.MSGSHIFT = CN()
    cfg.MODEL.MSGSHIFT.EMBED_DIMS = [64, 128, 320, 512]  # C of the 4 stages (PVTv2-b1)
    cfg.MODEL.MSGSHIFT.DEPTHS = [2, 2, 2, 2]  # blocks per stage
    cfg.MODEL.MSGSHIFT.NUM_HEADS = [1, 2, 5, 8]  # attention heads per stage
    cfg.MODEL.MSGSHIFT.MLP_RATIOS = [8, 8, 4, 4]  # FFN hidden size / C per stage
    cfg.MODEL.MSGSHIFT.SR_RATIOS = [8, 4, 2, 1]  # spatial reduction of keys/values per stage
    cfg.MODEL.MSGSHIFT.NUM_MESSENGERS = 32  # M, messenger tokens per frame
    # Temporal shift of each messenger group (M / len groups), negated every other block.
    cfg.MODEL.MSGSHIFT.SHIFT_STRIDES = [1, -1, 2, -2]
    cfg.MODEL.MSGSHIFT.DROP_PATH_RATE = 0.1  # stochastic depth, largest rate (last block)
    cfg.MODEL.MSGSHIFT.OUT_FEATURES = ["res2", "res3", "res4", "res5"]  # strides 4-32
    cfg.MODEL.TEVIT = CN()
    cfg.MODEL.TEVIT.FPN_DIM = 256  # channels of the FPN neck and of the head
    cfg.MODEL.TEVIT.NUM_STAGES = 6  # iterative head stages (each one supervised)
    cfg.MODEL.TEVIT.NHEADS = 8  # heads of the (shared) frame and clip self-attention
    cfg.MODEL.TEVIT.DIM_FEEDFORWARD = 2048  # hidden size of the head's FFN
    cfg.MODEL.TEVIT.DYNAMIC_DIM = 64  # hidden channels of the dynamic convolutions
    cfg.MODEL.TEVIT.BOX_POOL = 7  # RoIAlign side for the box/class head
    cfg.MODEL.TEVIT.MASK_POOL = 14  # RoIAlign side for the mask head (masks are 2x that)
    cfg.MODEL.TEVIT.MASK_CONVS = 4  # 3x3 convolutions of the mask head
    cfg.MODEL.TEVIT.NUM_REG_FCS = 3  # fully connected layers before the box deltas
    cfg.MODEL.TEVIT.NUM_CLS_FCS = 1  # fully connected layers before the class logits
    # One mask logit per RoI instead of TeViT's K class-specific ones (the target's class
    # in training, the candidate's at inference).
    cfg.MODEL.TEVIT.CLASS_AGNOSTIC_MASKS = False
    # Loss weights (official): focal class, L1 and GIoU of the boxes, Dice of the masks.
    cfg.MODEL.TEVIT.CLASS_WEIGHT = 2.0
    cfg.MODEL.TEVIT.BBOX_WEIGHT = 5.0  # L1 of the (x1, y1, x2, y2) boxes / image size
    cfg.MODEL.TEVIT.GIOU_WEIGHT = 2.0  # 1 - GIoU
    cfg.MODEL.TEVIT.DICE_WEIGHT = 8.0  # Dice of the 28x28 box masks
    # Matching cost weights (focal class cost, box L1, -GIoU), averaged over the frames
    # where the instance is present, as TeViT's TeViTHungarianAssigner.
    cfg.MODEL.TEVIT.COST_CLASS = 2.0  # focal class cost (FocalLossCost)
    cfg.MODEL.TEVIT.COST_BBOX = 5.0  # L1 of the (x1, y1, x2, y2) boxes / image size
    cfg.MODEL.TEVIT.COST_GIOU = 2.0  # -GIoU


def normalize_override(cfg: CN, key: str, value: str) -> str:
    """The text of a command-line ``KEY VALUE`` override that ``cfg`` accepts, as
    ``train_net.py`` and the sweep tools both merge it; ``cfg`` is not modified.

    An integer given for a float key becomes that float (``MODEL.IFR.LAMBDA_E 1`` ->
    ``1.0``): yacs refuses to coerce int to float, and a loss weight of 1 is legal.
    Raises ValueError naming the key: an unknown key (with the closest existing names) or
    a value of the wrong type.
    """
    moved = moved_key_message(key)
    if moved:
        raise ValueError(moved)
    node, path = cfg, []
    for part in key.split("."):
        if not isinstance(node, CN) or part not in node:
            candidates = [".".join(path + [k]) for k in node] if isinstance(node, CN) else []
            close = difflib.get_close_matches(key, candidates, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"config key {key} does not exist in the config{hint}")
        node, path = node[part], path + [part]
    if isinstance(node, float) and type(CN._decode_cfg_value(value)) is int:
        value = repr(float(CN._decode_cfg_value(value)))
    try:
        cfg.clone().merge_from_list([key, value])
    except Exception as e:
        raise ValueError(f"{key}={value}: not a valid value for this config key: {e}") from None
    return value


def merge_overrides(cfg: CN, opts: Sequence[str]) -> None:
    """``cfg.merge_from_list(opts)`` for ``[KEY, VALUE, ...]``, each pair checked and
    normalised by :func:`normalize_override`."""
    if len(opts) % 2:
        raise ValueError(f"overrides must be KEY VALUE pairs, got an odd number: {list(opts)}")
    for key, value in zip(opts[0::2], opts[1::2]):
        cfg.merge_from_list([key, normalize_override(cfg, key, value)])


def _add_datasets_config(cfg: CN) -> None:
    # YouTube-VIS-format datasets of your own, registered before the run:
    # ["NAME=ANNOTATIONS.json:FRAMES_FOLDER", ...]; the names then go in DATASETS.TRAIN/TEST.
    # Classes come from the json; MODEL.VIS.NUM_CLASSES follows the first training (else
    # test) dataset's unless set on the command line.
    cfg.DATASETS.REGISTER = []


def _add_evaluation_config(cfg: CN) -> None:
    # Tracking metrics (IDF1, MOTA, HOTA, ...): predictions scored below this take no
    # part (a MOT metric scores one set of hypotheses, not a ranked list). The one default
    # of the evaluator and of tools/evaluate.py --tracking-score-threshold.
    cfg.TEST.TRACKING_SCORE_THRESHOLD = 0.5
    # A registered dataset, neither trained nor evaluated on (e.g. ytvis_tiny_tune), on
    # which each evaluation first chooses the model's own tracking score threshold: the one
    # of best IDF1 (ifr/evaluation/operating_point.py). The tracking metrics of every test
    # dataset are then also reported at that threshold (IDF1_own, ..., threshold_own).
    # "": the fixed threshold only.
    cfg.TEST.TRACKING_TUNE_DATASET = ""


# The shared keys were under MODEL.IFR before MODEL.VIS held them.
_OLD_SHARED_NODE, _SHARED_NODE = "MODEL.IFR.", "MODEL.VIS."


def moved_key_message(key: str) -> Optional[str]:
    """``"MODEL.IFR.NUM_CLASSES is now MODEL.VIS.NUM_CLASSES"`` for a shared key given
    under its old node; None for any other key (valid or not)."""
    if not key.startswith(_OLD_SHARED_NODE):
        return None
    rest = key[len(_OLD_SHARED_NODE) :]
    defaults = CN(new_allowed=True)
    defaults.MODEL = CN()
    _add_model_config(defaults)
    _add_ifr_config(defaults)
    _add_test_config(defaults)
    if _has_key(defaults, _OLD_SHARED_NODE + rest) or not _has_key(defaults, _SHARED_NODE + rest):
        return None
    return f"{key} is now {_SHARED_NODE}{rest} (the keys every system reads are under MODEL.VIS)"


def moved_key_in_error(error: BaseException) -> Optional[str]:
    """:func:`moved_key_message` for the key a yacs merge error names, if any."""
    match = re.search(r"MODEL\.IFR\.[A-Z0-9_.]*[A-Z0-9_]", str(error))
    return moved_key_message(match.group(0)) if match else None


def _has_key(cfg: CN, key: str) -> bool:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, CN) or part not in node:
            return False
        node = node[part]
    return True
