"""DLA (anchor-free, the paper's default) R-18-FPN (64 channels) on the embedded shapes dataset.

``configs/COCO-Detection/dla_R_50_FPN_1x.py`` shrunk by ``configs/common/quickstart.py`` exactly
as ``atss_R18_shapes.py`` shrinks ATSS (256 px, batch 8, 300 iterations, from scratch, anchor =
4 x stride): compare with ``atss_anchor_free_R18_shapes.py`` (same box coder), or with
``atss_R18_shapes.py`` through ``projects/DLA/configs/dla_anchor_based_R18_shapes.py``.
alpha's schedule (Eq. 2) counts epochs of the images the train loader really uses (the 470
non-empty ones of the 512 at batch 8: 58.75 iterations per epoch, T = 300 / 58.75 = 5.1 epochs);
the training tool re-derives it from the loaded dataset, any other trainer reads the config's
values.
"""

# isort: skip_file  (import order = the loaded config's top-level key order: keep it as written)
from ..common.data.constants import dataset_sizes
from ..common.quickstart import load_quickstart

model, dataloader, optimizer, lr_multiplier, train = load_quickstart(
    "dla_R_50_FPN_1x.py", output_dir="./output/quickstart_dla"
)
model.anchor_generator.sizes = [[32], [64], [128], [256], [512]]
# ltrb distances: ReLU values, gradient passed below 0: from scratch, a distance
# channel can be born at 0 on every location and, under a plain ReLU, never learn (one seed in
# eight on a large-object set; benchmarks/DLA_COLLAPSE.md). Same forward values; "relu" is the
# plain ReLU (the COCO paper config's; projects/DLA/DESIGN.md).
model.head.regression_activation = "relu_straight_through"
# alpha's schedule (Eq. 2): 470 / 8 = 58.75 iterations per epoch, 300 iterations (the tool
# re-derives both from the loaded dataset and the final train.max_iter)
model.iters_per_epoch = dataset_sizes["semianchor_shapes_train"] / dataloader.train.total_batch_size
model.max_iter = train.max_iter
