"""The networks `train.py` trains, built with a recipe's regularisation and batch-norm settings.

Each model maps [-1, 1] images of `image_size` to logits over `num_classes` (background
included), with output layers named `logits` (and `aux_logits` for Inception v3's auxiliary
head). The model's name is its key in `recipes.RECIPES`, so a saved checkpoint says which
network it holds.
"""

from __future__ import annotations

import os
import random
import re
import warnings

import keras
import tensorflow as tf

from trainer.recipes import Recipe

LOGITS, AUX_LOGITS = "logits", "aux_logits"

_KERAS_BASES = {
    "inception_v3": keras.applications.InceptionV3,
    "inception_resnet_v2": keras.applications.InceptionResNetV2,
    "resnet50": keras.applications.ResNet50,
    "vgg16": keras.applications.VGG16,
    "mobilenet_v2": keras.applications.MobileNetV2,
}
_KERNELS = {"Conv2D": "kernel_regularizer", "Dense": "kernel_regularizer",
            "DepthwiseConv2D": "depthwise_regularizer"}


# The input each published ImageNet weight set was trained with: Inception and MobileNet
# weights take [-1, 1], what input_fn gives; ResNet-50's and VGG-16's take Caffe's BGR with the
# ImageNet mean subtracted, which CaffeInput makes from [-1, 1] inside the model.
CAFFE_INPUT = ("resnet50", "vgg16")


class PretrainedError(ValueError):
    """Published weights that cannot be had; the message says where to put the file."""


@keras.saving.register_keras_serializable(package="inception_data")
class CaffeInput(keras.layers.Layer):
    """[-1, 1] RGB -> 0..255 BGR minus the ImageNet channel means: what
    keras.applications.resnet50 / vgg16 `preprocess_input` gives for 0..255 RGB."""

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, inputs):
        bgr = (inputs[..., ::-1] + 1.0) * 127.5
        return bgr - keras.ops.convert_to_tensor(self.MEAN_BGR, dtype=bgr.dtype)


def _keras_base(name: str, shape, pretrained: str | None):
    """The Keras application without its top, on [-1, 1] inputs, with `pretrained` weights
    ('imagenet': Keras' published ones, fetched into $KERAS_HOME/models; or a file's path)."""
    if pretrained and pretrained != "imagenet":
        _check_weights_path(pretrained, name)
    inputs = keras.Input(shape)
    x = CaffeInput(name="caffe_input")(inputs) if pretrained and name in CAFFE_INPUT else inputs
    try:
        with warnings.catch_warnings():  # a warning per layer Keras could not match
            warnings.simplefilter("ignore")
            return _KERAS_BASES[name](include_top=False, weights=pretrained, input_tensor=x,
                                      input_shape=shape)
    except Exception as err:
        if pretrained != "imagenet":
            raise PretrainedError(f"--pretrained {pretrained} does not hold {name}'s weights "
                                  f"({_first_mismatch(err)}): give the no-top weights file of "
                                  f"{name} (a .h5 of Keras' applications)") from None
        url = re.search(r"https?://\S+?\.h5", str(err))
        file = url.group(0).rsplit("/", 1)[-1] if url else f"the no-top {name} weights file"
        home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
        reason = str(err).splitlines()[0].rsplit(" -- ", 1)[-1][:160]
        raise PretrainedError(
            f"the ImageNet weights of {name} could not be fetched ({reason}); put {file}"
            f"{' (from ' + url.group(0) + ')' if url else ''} in {home}/models/, where Keras "
            f"looks first, or pass --pretrained PATH to a copy of it") from None


def _check_weights_path(path: str, name: str) -> None:
    """--pretrained PATH is one weights file (h5py's own errors name buffers and byte counts)."""
    advice = f"give the no-top weights file of {name} (a .h5 of Keras' applications)"
    if not tf.io.gfile.exists(path):
        raise PretrainedError(f"--pretrained {path} does not exist: {advice}")
    if tf.io.gfile.isdir(path):
        raise PretrainedError(f"--pretrained {path} is a folder: {advice}, such as "
                              f"{path.rstrip('/')}/<file>.h5")


def _first_mismatch(err: Exception) -> str:
    """Keras' error for weights of another network, shortened: it lists every layer (5,546
    characters for ResNet-50); the count and the first layer say what happened."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    count = re.search(r"A total of (\d+) objects could not be loaded", str(err))
    first = next((line for line in lines if line.startswith("Layer '")), None)
    if count and first:
        return f"{count.group(1)} of its layers could not be loaded; the first: {first[:160]}"
    return (lines[0] if lines else type(err).__name__)[:200]


def build(name: str, num_classes: int, image_size: int, rec: Recipe,
          pretrained: str | None = None) -> keras.Model:
    """`name` from recipes.MODELS -> an uncompiled keras.Model with the recipe applied;
    `pretrained` ('imagenet' or a weights file) starts the network below the logits from
    published ImageNet weights."""
    if image_size < rec.min_image_size:
        raise ValueError(f"{name} needs images of at least {rec.min_image_size} px, got "
                         f"{image_size}; pass a larger --image-size")
    shape = (image_size, image_size, 3)
    if name in OURS:
        if pretrained:
            raise PretrainedError(f"{name} has no published ImageNet weights in Keras; "
                                  f"choose one of {', '.join(_KERAS_BASES)} for --pretrained")
        inputs = keras.Input(shape)
        features = OURS[name](inputs, small_input=image_size <= 64)
    else:
        base = _keras_base(name, shape, pretrained)
        inputs, features = base.input, base.output
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    if rec.dropout:
        x = TowerDropout(rec.dropout, name="dropout")(x)
    outputs = [keras.layers.Dense(num_classes, dtype="float32", name=LOGITS)(x)]
    if rec.aux_loss_weight:
        outputs.append(_aux_head(base.get_layer("mixed7").output, num_classes))
    model = keras.Model(inputs, outputs, name=name)
    rebuilt = _with_recipe(model, rec)
    if pretrained:  # the rebuild makes fresh weights: the published ones are copied over
        rebuilt.set_weights(model.get_weights())
    return rebuilt


def _with_recipe(model: keras.Model, rec: Recipe) -> keras.Model:
    """Rebuilt from its config so that every layer gets the L2 penalty and batch-norm momentum
    at construction (Keras applications take neither as arguments). TF-slim's
    l2_regularizer(w) is w * sum(x^2) / 2, Keras' L2(w) is w * sum(x^2): hence w / 2."""
    config = model.get_config()
    for layer in config["layers"]:
        settings = layer["config"]
        if layer["class_name"] in _KERNELS and rec.weight_decay:
            settings[_KERNELS[layer["class_name"]]] = keras.regularizers.L2(rec.weight_decay / 2)
        elif layer["class_name"] == "BatchNormalization":
            settings["momentum"] = rec.bn_momentum
    return keras.Model.from_config(config)


@keras.saving.register_keras_serializable(package="inception_data")
class TowerDropout(keras.layers.Layer):
    """Dropout whose masks a seeded run reproduces on any number of towers.

    Keras' Dropout draws its seed from one SeedGenerator whose state every tower's copy of the
    step reads and advances; which tower gets there first varies, so two runs with the same
    `--seed` on 2 towers gave different losses from step 1 on (1 run in 5 here). Here each draw
    is stateless, seeded by (layer seed, draw count x towers + tower): the count is one
    variable updated once per step for all towers (ONLY_FIRST_REPLICA, a synchronised update),
    and it is saved with the checkpoint, so a resumed run continues the sequence. The layer
    seed comes from Python's `random`, which `keras.utils.set_random_seed` seeds.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = random.randrange(2 ** 31) if seed is None else seed

    def build(self, input_shape):
        self.draws = self.add_weight(shape=(), dtype="int64", initializer="zeros",
                                     trainable=False, aggregation="only_first_replica",
                                     name="draws")

    def call(self, inputs, training=None):
        if not training or not self.rate:
            return inputs
        context = tf.distribute.get_replica_context()
        towers = context.num_replicas_in_sync if context else 1
        tower = context.replica_id_in_sync_group if context else 0
        draw = self.draws.value * towers + tf.cast(tower, tf.int64)
        keep = tf.random.stateless_uniform(tf.shape(inputs), [self.seed, draw]) >= self.rate
        self.draws.assign_add(1)
        return tf.where(keep, inputs / (1.0 - self.rate), tf.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def is_head(layer) -> bool:
    """The layers a fine-tune starts afresh or that sit on them: the logits and the auxiliary
    head (its layers are all named `aux_*` here), which published ImageNet weights lack."""
    return layer.name == LOGITS or layer.name.startswith("aux_")


def _aux_head(features, num_classes: int):
    """The original's auxiliary classifier on Mixed_6e (Keras: mixed7): 5x5 average pool
    stride 3, 1x1 conv 128, a conv covering the pooled map (5x5 at 299 px) to 768, logits."""
    pool = min(5, features.shape[1])
    x = keras.layers.AveragePooling2D(pool, strides=3, name="aux_pool")(features)
    for filters, kernel, name in ((128, 1, "aux_conv1"), (768, x.shape[1], "aux_conv2")):
        x = keras.layers.Conv2D(filters, kernel, use_bias=False, name=name)(x)
        x = keras.layers.BatchNormalization(scale=False, name=f"{name}_bn")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    x = keras.layers.Flatten(name="aux_flatten")(x)
    return keras.layers.Dense(num_classes, dtype="float32", name=AUX_LOGITS)(x)


# ------------------------------------------------- networks not in Keras: ResNet-34, tiny

RESNET34_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))


def _conv_bn(x, filters, kernel, strides, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def basic_block(x, filters: int, strides: int, name: str):
    """Two 3x3 convolutions plus the shortcut (a strided 1x1 projection when the shape
    changes: option B of He et al. 2015)."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_proj", relu=False)
    y = _conv_bn(x, filters, 3, strides, f"{name}_1")
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def resnet34_features(inputs, *, small_input: bool = False):
    """He et al.'s 34-layer ResNet up to the last block: [3, 4, 6, 3] basic blocks of
    64/128/256/512 filters. `small_input` (28-64 px, MNIST/CIFAR) swaps the 7x7/2 stem and max
    pool for one 3x3/1 convolution, as the paper's CIFAR networks do, so a 32 px image is not
    reduced to 1 px by the third stage."""
    if small_input:
        x = _conv_bn(inputs, 64, 3, 1, "stem")
    else:
        x = _conv_bn(inputs, 64, 7, 2, "stem")
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (filters, blocks) in enumerate(RESNET34_STAGES):
        for block in range(blocks):
            strides = 2 if block == 0 and stage > 0 else 1
            x = basic_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}")
    return x


def tiny_features(inputs, *, small_input: bool = False):
    """Three 3x3 convolutions of 16, 32 and 64 filters, each with batch norm, ReLU and a 2x2
    max pool (about 25,000 weights): a network that trains in seconds on a CPU, to check data
    and trainer end to end before a long run (and what the trainer's own tests train)."""
    x = inputs
    for i, filters in enumerate((16, 32, 64)):
        x = _conv_bn(x, filters, 3, 1, f"tiny{i + 1}")
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"tiny{i + 1}_pool")(x)
    return x


OURS = {"resnet34": resnet34_features, "tiny": tiny_features}
