"""Table 2 analogue at the quickstart budget: SAD with (#s, #a) = (2, 1) (A = 2), with the AC
head. Its twin without it: ``sad_A2_noac_R18_coco_json.py``."""

from detectron2.config import LazyConfig

model, dataloader, optimizer, lr_multiplier, train = LazyConfig.load_rel(
    "../../../configs/quickstart/sad_R18_coco_json.py",
    ("model", "dataloader", "optimizer", "lr_multiplier", "train"),
)

model.anchor_generator.sizes = [
    [2 * s * 2 ** (i / 2) for i in range(2)] for s in (8, 16, 32, 64, 128)
]
model.anchor_generator.aspect_ratios = [[1.0]]
model.head.num_anchors = 2
train.output_dir = "./output/sad_A2_coco_json"
