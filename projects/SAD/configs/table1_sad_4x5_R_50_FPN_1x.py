"""SAD Table 1 row (#s, #a) = (4, 5): A = 20 anchors per location (base 4 x stride, scales
2^(i/4), ratios [1 / 3, 1 / 2, 1.0, 2.0, 3.0]; choice S1)."""

from semianchor.model_zoo import load_base, set_anchor_grid

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py"
)
set_anchor_grid(model, base=4, num_scales=4, aspect_ratios=[1 / 3, 1 / 2, 1.0, 2.0, 3.0])
