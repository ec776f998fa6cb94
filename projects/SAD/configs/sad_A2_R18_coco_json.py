"""Table 2 analogue at the quickstart budget: SAD with (#s, #a) = (2, 1) (A = 2), with the AC
head. Its twin without it: ``sad_A2_noac_R18_coco_json.py``."""

from semianchor.model_zoo import load_base, set_anchor_grid

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/quickstart/sad_R18_coco_json.py"
)
set_anchor_grid(model, base=2, num_scales=2, aspect_ratios=[1.0])
train.output_dir = "./output/sad_A2_coco_json"
