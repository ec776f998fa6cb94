"""SAD Table 1 row (#s, #a) = (3, 3): A = 9 anchors per location (base 4 x stride, scales
2^(i/3), ratios [0.5, 1.0, 2.0]; choice S1)."""

from semianchor.model_zoo import load_base, set_anchor_grid

model, dataloader, optimizer, lr_multiplier, train = load_base(
    "../../../configs/COCO-Detection/sad_R_50_FPN_1x.py"
)
set_anchor_grid(model, base=4, num_scales=3, aspect_ratios=[0.5, 1.0, 2.0])
