"""Table 2's row APM + FAM at the quickstart budget with the paper's loss (Sec. 3.3)."""

from semianchor.model_zoo import load_base, set_padet_paper_loss

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/padet_R18_coco_json.py"
)
set_padet_paper_loss(model)
train.output_dir = "./output/padet_apm_fam_paper_loss_coco_json"
