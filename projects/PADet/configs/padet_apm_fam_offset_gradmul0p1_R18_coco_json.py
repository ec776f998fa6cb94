"""The FAM diagnostic's arm: Table 2's APM + FAM at the quickstart budget
(padet_apm_fam_R18_coco_json.py) with the gradient reaching the FAM's offset branch scaled by
0.1 (the usual learning-rate multiplier of deformable-conv offsets)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/padet_R18_coco_json.py"
)

model.head.fam_offset_grad_mul = 0.1
train.output_dir = "./output/padet_apm_fam_offset_gradmul0p1_coco_json"
