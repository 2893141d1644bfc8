"""Image augmentation and standardization of the CIFAR and Tiny-ImageNet configs.

Stateless: the same seed gives the same images, so an epoch's augmentation
depends only on the run's seed and the epoch (a resumed run sees the images
the uninterrupted one saw).

TensorFlow ops (in tf.data's threads): without TensorFlow installed, each
function raises `TensorFlowRequiredError` saying so.
"""

from al_keras.data.errors import import_tensorflow

# The random parts of augmentation, on images scaled to [0, 1]. CIFAR's are the
# original code's (TensorFlow's CIFAR-10 tutorial, after a 4-pixel zero pad).
CIFAR_AUGMENTATION = dict(padded_size=40, brightness=63 / 255, contrast=(0.2, 1.8))
TINY_IMAGENET_AUGMENTATION = dict(padded_size=70, brightness=0.2, contrast=(0.8, 1.2),
                                  saturation=(0.8, 1.2), hue=0.05)


def standardize(images):
    """Scales each image to mean 0 and standard deviation 1 (per-image)."""
    tf = _tensorflow()
    return tf.image.per_image_standardization(images)


def augment_cifar(images, seed):
    """The original code's CIFAR augmentation, then `standardize`.

    Zero-pads to 40x40, crops a random 32x32 window, flips left-right at
    random, shifts brightness by up to 63/255 and scales contrast by 0.2-1.8.

    Args:
        images: one image `(32, 32, 3)` or a batch, float in [0, 1] (uint8
            images are scaled to it).
        seed: a stateless seed, shape `(2,)` ints; the same seed gives the same
            output.

    Returns:
        float32 images of the input's shape.
    """
    return _augment(images, seed, **CIFAR_AUGMENTATION)


def augment_tiny_imagenet(images, seed):
    """Tiny-ImageNet augmentation, then `standardize`.

    Zero-pads to 70x70, crops a random 64x64 window, flips left-right at
    random, and jitters colour: brightness by up to 0.2, contrast and
    saturation by 0.8-1.2, hue by up to 0.05.

    Args:
        images: one image `(64, 64, 3)` or a batch, float in [0, 1] (uint8
            images are scaled to it).
        seed: a stateless seed, shape `(2,)` ints.

    Returns:
        float32 images of the input's shape.
    """
    return _augment(images, seed, **TINY_IMAGENET_AUGMENTATION)


def _tensorflow():
    return import_tensorflow("Image augmentation and standardization (CIFAR, "
                             "Tiny-ImageNet)")


def _augment(images, seed, **params):
    tf = _tensorflow()
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    images = tf.cast(images, tf.float32)
    seed = tf.convert_to_tensor(seed)
    if images.shape.rank == 3:
        return _augment_image(images, seed, **params)
    seeds = tf.random.experimental.stateless_split(seed, tf.shape(images)[0])
    return tf.map_fn(lambda args: _augment_image(*args, **params), (images, seeds),
                     fn_output_signature=tf.float32)


def _augment_image(image, seed, padded_size, brightness, contrast, saturation=None, hue=None):
    tf = _tensorflow()
    shape = image.shape
    seeds = tf.random.experimental.stateless_split(seed, 6)
    image = tf.image.resize_with_crop_or_pad(image, padded_size, padded_size)
    image = tf.image.stateless_random_crop(image, shape, seed=seeds[0])
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    image = tf.image.stateless_random_brightness(image, brightness, seed=seeds[2])
    image = tf.image.stateless_random_contrast(image, *contrast, seed=seeds[3])
    if saturation is not None:
        image = tf.clip_by_value(image, 0.0, 1.0)
        image = tf.image.stateless_random_saturation(image, *saturation, seed=seeds[4])
        image = tf.image.stateless_random_hue(image, hue, seed=seeds[5])
    return standardize(image)
