"""SAD Table 2 row "without AC": (#s, #a) = (2, 1), no anchor-classification head; at test time
one random anchor per location (fixed seed) takes the location probability."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "table1_sad_2x1_R_50_FPN_1x.py", ("model", "dataloader", "optimizer", "lr_multiplier", "train")
)

model.head.anchor_classification = False
