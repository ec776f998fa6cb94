"""Table 2's last row (APM + FAM) at the quickstart budget on a COCO json (BCCD in the benchmark):
configs/quickstart/padet_R18_coco_json.py unchanged (R-18 encoder from scratch, 64-channel
decoder, the quickstart's small-image recipe and schedule). Its twins differ only by the APM /
FAM switches: padet_apm_R18_coco_json.py (no FAM), padet_baseline_R18_coco_json.py (no APM)."""

from semianchor.model_zoo import load_base

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/padet_R18_coco_json.py"
)

train.output_dir = "./output/padet_apm_fam_coco_json"
