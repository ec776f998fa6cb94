"""Table 2's row APM at the quickstart budget: padet_apm_fam_R18_coco_json.py without feature
alignment (a plain 3x3 conv where the FAM would be); the full APM (theta rule + promotion)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/padet_R18_coco_json.py"
)

model.head.fam_mode = "none"
train.output_dir = "./output/padet_apm_coco_json"
