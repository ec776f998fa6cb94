"""Table 2's row APM + FAM at the quickstart budget with the paper's loss (Sec. 3.3): no hard-
negative mining on either module (every negative the theta rule leaves trains), each module's
loss divided by this step's positive count. Otherwise padet_apm_fam_R18_coco_json.py."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/quickstart/padet_R18_coco_json.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.loss_mode = "paper"
model.neg_pos_ratio = 0.0
model.apm_neg_pos_ratio = 0.0
train.output_dir = "./output/padet_apm_fam_paper_loss_coco_json"
