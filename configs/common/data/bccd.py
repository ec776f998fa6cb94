"""BCCD (shipped in the package, no download): ``bccd_train`` (292 images) / ``bccd_val`` (72),
640x480 blood-smear photos, 3 classes (Platelets, RBC, WBC). See semianchor/data/builtin/bccd/.

The quickstart's small-image recipe of ``coco_json_quickstart.py`` (shortest edge 224-288 px for
training, 256 px for testing, batch 8, one worker) with the datasets named instead of given as
files, so this is the same recipe as the BCCD rows of benchmarks/ASSIGNERS.md.
"""

from detectron2.config import LazyCall as L

import semianchor.data  # noqa: F401  (registers bccd_train / bccd_val)
from semianchor.data import get_checked_dataset_dicts

from .coco_json_quickstart import dataloader

dataloader.train.dataset = L(get_checked_dataset_dicts)(names="bccd_train")
dataloader.test.dataset = L(get_checked_dataset_dicts)(names="bccd_val", filter_empty=False)
dataloader.evaluator.dataset_name = "${..test.dataset.names}"
