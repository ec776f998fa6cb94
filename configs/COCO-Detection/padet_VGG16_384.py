"""PADet, VGG-16, 384 x 384, COCO trainval35k, the paper's recipe (Sec. 3.3, Sec. 4): 160 epochs at
batch 32 (~586k iterations), lr 2e-3 (warm-up 5 epochs from 1e-6, x0.1 at 100 / 140 epochs),
weight decay 5e-4. Paper (minival, Table 2): baseline 29.6 -> APM 31.7 -> APM + FAM 34.8 AP.

Input: SSD's augmentation (photometric distortion, zoom-out up to 4x, min-IoU crop; then warped to
384 x 384 and flipped), ``semianchor.data.ssd_augment``; test images warped to 384 x 384.
Weights: Detectron2 has no ImageNet VGG-16; convert torchvision's ``vgg16`` with
``tools/convert_imagenet_weights.py vgg16`` (features.* -> ``backbone.encoder.to_conv4_3`` /
``to_fc7`` convs, fc6/fc7 subsampled as SSD does) and set ``train.init_checkpoint`` to the
converted file; without it the training tool warns at start.
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from semianchor.data.ssd_augment import (
    Expand,
    MinIoURandomCrop,
    PhotometricDistortion,
    SSDDatasetMapper,
)

from ..common.data.coco import dataloader
from ..common.models.padet import model
from ..common.optim import SGD as optimizer
from ..common.padet_schedule import BASE_LR, BATCH, MAX_ITER, lr_multiplier  # noqa: F401
from ..common.train import train

dataloader.train.mapper = L(SSDDatasetMapper)(
    is_train=True,
    augmentations=[
        L(PhotometricDistortion)(),
        L(Expand)(max_ratio=4.0, prob=0.5, fill=(104, 117, 124)),  # BGR pixel mean
        L(MinIoURandomCrop)(min_ious=(0.1, 0.3, 0.5, 0.7, 0.9)),
        L(T.Resize)(shape=(384, 384)),
        L(T.RandomFlip)(horizontal=True),
    ],
    image_format="BGR",
)
dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(384, 384))]
model.test_input_size = (384, 384)  # the model warps any other input too (DefaultPredictor)
dataloader.train.total_batch_size = BATCH
optimizer.lr = BASE_LR
optimizer.weight_decay = 5e-4
train.max_iter = MAX_ITER
train.init_checkpoint = ""  # a converted ImageNet VGG-16 (see the docstring)
# without it the training tool warns at start (semianchor.engine.init_weights)
train.init_checkpoint_expected = (
    "ImageNet VGG-16: torchvision's, converted by tools/convert_imagenet_weights.py vgg16"
)
