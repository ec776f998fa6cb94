"""PADet APM + FAM (configs/COCO-Detection/padet_VGG16_384.py) with the paper's loss (Sec. 3.3)."""

from semianchor.model_zoo import load_base, set_padet_paper_loss

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/padet_VGG16_384.py"
)
set_padet_paper_loss(model)
train.output_dir = "./output/padet_table2_apm_fam_paper_loss"
