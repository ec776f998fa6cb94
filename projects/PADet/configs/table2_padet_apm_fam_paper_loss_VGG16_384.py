"""PADet APM + FAM (configs/COCO-Detection/padet_VGG16_384.py) with the paper's loss (Sec. 3.3):
no hard-negative mining on either module, every negative the theta rule leaves trains the
detection module, each module's loss divided by this step's positive count."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/COCO-Detection/padet_VGG16_384.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.loss_mode = "paper"
model.neg_pos_ratio = 0.0
model.apm_neg_pos_ratio = 0.0
train.output_dir = "./output/padet_table2_apm_fam_paper_loss"
