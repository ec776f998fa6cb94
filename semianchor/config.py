"""Yacs defaults for semianchor models (the path ``DefaultPredictor`` and ``build_model`` use).

Usage::

    from detectron2.config import get_cfg
    from semianchor.config import add_semianchor_config
    cfg = get_cfg()
    add_semianchor_config(cfg)
    cfg.merge_from_file("configs/yacs/ATSS_R_50_FPN_1x.yaml")

Every key mirrors a constructor argument of the LazyConfig path (``configs/common/models``), so a
model built either way has the same modules and state-dict keys.
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_semianchor_config"]


def add_semianchor_config(cfg: CN) -> CN:
    if "SEMIANCHOR" in cfg.MODEL:
        return cfg
    cfg.MODEL.FPN.TOP_BLOCK_IN_FEATURE = "p5"  # ATSS/FCOS: P6 from P5 (RetinaNet: "res5")

    _C = cfg.MODEL.SEMIANCHOR = CN()
    _C.NUM_CLASSES = 80
    _C.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]

    _C.HEAD = CN()
    _C.HEAD.NUM_CONVS = 4
    _C.HEAD.NORM = "GN"
    _C.HEAD.PRIOR_PROB = 0.01
    _C.HEAD.QUALITY = "centerness"  # "" for none
    _C.HEAD.SCALE_PER_LEVEL = True
    # "relu" for ltrb distances; "relu_straight_through": same values, gradient also below 0
    # (DLA quickstart: a distance channel born dead never learns with a plain ReLU)
    _C.HEAD.REGRESSION_ACTIVATION = "none"

    _C.BOX_CODER = CN()
    _C.BOX_CODER.NAME = "deltas"  # or "ltrb"
    _C.BOX_CODER.WEIGHTS = (10.0, 10.0, 5.0, 5.0)

    _C.ASSIGNER = CN()
    _C.ASSIGNER.NAME = "ATSS"  # ATSS | MaxIoU | DLA | Cleanliness
    _C.ASSIGNER.TOPK = 9
    _C.ASSIGNER.CENTER_EPS = 0.01
    _C.ASSIGNER.IOU_THRESHOLDS = [0.4, 0.5]
    _C.ASSIGNER.IOU_LABELS = [0, -1, 1]
    _C.ASSIGNER.ALLOW_LOW_QUALITY_MATCHES = True

    _C.LOSS = CN()
    _C.LOSS.CLS_TYPE = "sigmoid_focal"  # or "softmax_ce" (K + 1 logits)
    _C.LOSS.CLS_WEIGHTING = "none"  # "assigner": positives' cls loss times the assigner's weights
    _C.LOSS.FOCAL_ALPHA = 0.25
    _C.LOSS.FOCAL_GAMMA = 2.0
    _C.LOSS.BOX_TYPE = "giou"
    _C.LOSS.SMOOTH_L1_BETA = 0.0
    _C.LOSS.BOX_WEIGHT = 2.0
    _C.LOSS.BOX_WEIGHTING = "centerness"  # none | centerness | assigner
    _C.LOSS.BOX_NORMALIZER = "weights"  # with a weighting: "weights" (their sum) or "positives"
    _C.LOSS.QUALITY_WEIGHT = 1.0
    _C.LOSS.NORMALIZER_MOMENTUM = 0.9

    _C.TEST = CN()
    _C.TEST.SCORE_MODE = "sqrt_cls_quality"
    _C.TEST.SCORE_THRESH = 0.05
    _C.TEST.TOPK_CANDIDATES = 1000
    _C.TEST.NMS_THRESH = 0.6

    # ---- DLA (Dynamic Label Assignment) -------------------------------------------------
    _C.DLA = CN()
    _C.DLA.ALPHA0 = 0.9
    _C.DLA.FIXED_ALPHA = -1.0  # >= 0: use this alpha throughout (paper ablation)
    _C.DLA.GAMMA = 1.0
    _C.DLA.METRIC_LOSS_WEIGHT = 1.0
    _C.DLA.ITERS_PER_EPOCH = 0  # 0: derive from the dataset size and batch size
    _C.DLA.MAX_ITER = 0  # 0: SOLVER.MAX_ITER
    _C.DLA.METRIC_CHANNELS = 0  # width of the metric branch's 1x1 reduction; 0: tower width
    _C.DLA.METRIC_LOSS_BETA = 2.0  # exponent of |c - m| in the metric loss (Eq. 7, GFL's beta)
    _C.DLA.SCORE_MODE = "metric"  # test-time score: metric | cls_metric | sqrt_cls_metric | cls

    # ---- SAD (Semi-Anchored Detector) ----------------------------------------------------
    _C.SAD = CN()
    _C.SAD.ANCHOR_CLASSIFICATION = True  # the AC branch (Table 2: False)
    _C.SAD.LOCATION_GAMMA = -1.0  # < 0: Eq. 4 location labels; else gamma of Eq. 1 (Table 4)
    _C.SAD.LOCATION_RULE = "anchors"  # Eq. 4 / Eq. 1; "fcos" / "fcos_shrink" (Table 3)
    _C.SAD.FCOS_SIZE_RANGES = [
        [0.0, 64.0],
        [64.0, 128.0],
        [128.0, 256.0],
        [256.0, 512.0],
        [512.0, 1e8],
    ]
    _C.SAD.FCOS_CENTER_RADIUS = 1.5
    _C.SAD.REGRESSION = "anchor"  # "anchor" (R1) or "location" (R2): choice S4
    _C.SAD.AC_IOU_THRESHOLD = 0.5  # IoU after regression for an anchor's class (choice S8)
    _C.SAD.SIGMA = 0.9  # Eq. 2 (0: binary AC targets)
    _C.SAD.AC_LOSS = "eq3"  # "eq3" (the smoothed focal loss, Eq. 3) or "qfl" (ablation)
    _C.SAD.AC_LOSS_WEIGHT = 1.0
    _C.SAD.AC_ALPHA = 0.25
    _C.SAD.AC_BETA = 2.0
    _C.SAD.INFERENCE = "top1"  # top1 | topk | pos (Table 6)
    _C.SAD.INFERENCE_TOPK = 2
    _C.SAD.INFERENCE_TAU = 0.1
    _C.SAD.NOAC_DRAW = 0  # without the AC head: the draw index of the per-image anchor pick

    # ---- PADet (configs/common/models/padet.py) ---------------------------------------------
    _C.PADET = CN()
    _C.PADET.ENCODER = "vgg16"  # or "resnet" (MODEL.RESNETS.DEPTH)
    _C.PADET.ENCODER_WIDTH = 1.0
    _C.PADET.NUM_EXTRA = 3  # extra encoder blocks: 3 for VGG-16 at 384, 4 at 512, 2 for ResNet
    _C.PADET.DECODER_CHANNELS = 256
    _C.PADET.INPUT_SIZE = 384  # SSD prior sizes: INPUT_SIZE x SIZE_FRACTIONS
    # test images of another size are warped to INPUT_SIZE x INPUT_SIZE by the model (SSD's test
    # resize; DefaultPredictor's ResizeShortestEdge would keep the aspect ratio)
    _C.PADET.TEST_WARP = True
    _C.PADET.SIZE_FRACTIONS = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87]
    _C.PADET.ASPECT_RATIOS = [[1.0, 2.0, 3.0, 0.5, 1 / 3]] * 4 + [[1.0, 2.0, 0.5]] * 2
    _C.PADET.STRIDES = [8, 16, 32, 64, 128, 384]
    _C.PADET.FAM_MODE = "disentangled"
    _C.PADET.FAM_LEVELS = 4
    _C.PADET.FAM_GRAD_MUL = 0.0
    _C.PADET.FAM_IMPL = "auto"  # the deformable conv: "auto", "sampled" or "torchvision"
    _C.PADET.FAM_OFFSET_GRAD_MUL = 1.0  # gradient scale on the FAM's offset branch (0: frozen)
    _C.PADET.USE_APM = True
    _C.PADET.PROMOTE = True
    _C.PADET.THETA = 0.01  # < 0: no theta rule / gate
    _C.PADET.NEG_POS_RATIO = 3.0
    _C.PADET.APM_NEG_POS_RATIO = 3.0
    _C.PADET.LOSS_MODE = "ohem"  # or "paper": no mining, / this step's positive counts (ratios 0)
    _C.PADET.SOFT_NMS_METHOD = "linear"
    _C.PADET.SOFT_NMS_IOU = 0.3
    _C.PADET.SOFT_NMS_SIGMA = 0.5
    _C.PADET.SOFT_NMS_MIN_SCORE = 0.001

    # ---- proposal generators (NoisyAnchorRPN) ---------------------------------------------
    _C.RPN = CN()
    _C.RPN.ASSIGNER_NAME = "Cleanliness"  # a name of ASSIGNER_BUILDERS

    # ---- Noisy anchors (cleanliness) -----------------------------------------------------
    _C.NOISY = CN()
    _C.NOISY.TOPN = 50
    _C.NOISY.ALPHA = 0.75
    _C.NOISY.GAMMA = 1.0
    _C.NOISY.SOFT_LABELS = True  # Table 3 "SL"
    _C.NOISY.REWEIGHT = True  # Table 3 "SR"
    _C.NOISY.EPS = 0.01  # f(x) = 1 / (1 - x) evaluated at min(x, 1 - EPS): weights stay finite
    return cfg
