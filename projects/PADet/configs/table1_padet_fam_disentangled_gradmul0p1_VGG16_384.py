"""PADet FAM gradient into the APM (choice P5, not a paper row): the disentangled FAM with the APM
deltas' gradient scaled by 0.1 (RepPoints' gradient_mul) instead of detached (0, Guided
Anchoring's choice and the default)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)

model.head.fam_grad_mul = 0.1
train.output_dir = "./output/padet_table1_fam_disentangled_gradmul0p1"
