"""Input normalisation constants of the ImageNet-pretrained backbones (Detectron2's
``common/data/constants.py``: MSRA R-50.pkl (Caffe) weights were trained with std 1 on BGR 0-255
inputs), and the training-set sizes the configs use."""

from detectron2.model_zoo import get_config

# Training images the train loaders really use (filter_empty=True drops images without objects):
# DLA's alpha schedule (Eq. 2) counts epochs of them. tools/lazyconfig_train_net.py replaces the
# config's value with the loaded dataset's length; these are what any other trainer uses.
dataset_sizes = dict(
    coco_2017_train=117266,  # of 118287 images, 1021 have no annotation
    semianchor_shapes_train=470,  # of 512 generated images, 42 are empty
    bccd_train=292,  # BCCD (benchmarks/baselines_bccd.md): the quickstart COCO-json example
)

constants = get_config("common/data/constants.py").constants
