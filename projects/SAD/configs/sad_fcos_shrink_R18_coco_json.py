"""SAD at the quickstart budget with Table 3's "FCOS-Shrink" location labelling
(``model.assigner.location_rule="fcos_shrink"``) instead of Eq. 4; everything else as
sad_R18_coco_json.py."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/quickstart/sad_R18_coco_json.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.assigner.location_rule = "fcos_shrink"
train.output_dir = "./output/sad_fcos_shrink_coco_json"
