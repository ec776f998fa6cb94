"""The FAM diagnostic's arm: Table 2's APM + FAM at the quickstart budget
(padet_apm_fam_R18_coco_json.py) with the gradient reaching the FAM's offset branch scaled by
0.0 (the offsets stay at their zero initialisation: a plain 3x3 conv with the
FAM model's parameters and random initialisation, the control that separates the alignment from
the initialisation)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/padet_R18_coco_json.py"
)

model.head.fam_offset_grad_mul = 0.0
train.output_dir = "./output/padet_apm_fam_offset_gradmul0_coco_json"
