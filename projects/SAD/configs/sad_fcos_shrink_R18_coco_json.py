"""SAD at the quickstart budget with Table 3's "FCOS-Shrink" location labelling instead of Eq. 4."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/sad_R18_coco_json.py"
)

model.assigner.location_rule = "fcos_shrink"
train.output_dir = "./output/sad_fcos_shrink_coco_json"
