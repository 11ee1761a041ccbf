import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import encode_image, random_pixels
from trainer.preprocessing import bytes_to_pixels, decode_and_resize, pixels_to_bytes, preprocessing_fn


@pytest.mark.parametrize('shape, image_format', [
    ((40, 30, 3), 'JPEG'),
    ((40, 30, 3), 'PNG'),
    ((40, 30), 'PNG'),        # grayscale
    ((40, 30, 4), 'PNG'),     # RGBA
    ((40, 30, 3), 'BMP'),
    ((40, 30, 3), 'GIF'),
])
def test_preprocessing_fn_gives_uint8_rgb_at_target_size(shape, image_format):
  data = encode_image(random_pixels(shape), image_format)
  outputs = preprocessing_fn({'image': tf.constant([[data], [data]]),
                              'label': tf.constant([[1], [0]], tf.int64)})
  pixels = tf.io.decode_raw(outputs['image'], tf.uint8)
  assert pixels.shape == (2, 150 * 150 * 3)
  assert outputs['label'].numpy().tolist() == [1, 0]
  images = bytes_to_pixels(outputs['image'], 150)
  assert images.shape == (2, 150, 150, 3)
  assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255


def test_grayscale_becomes_three_equal_channels():
  data = encode_image(random_pixels((16, 16)), 'PNG')
  image = decode_and_resize(tf.constant([data]), 75).numpy()[0]
  assert image.dtype == np.uint8
  np.testing.assert_array_equal(image[..., 0], image[..., 1])
  np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_rgba_drops_alpha_not_colour():
  rgba = random_pixels((75, 75, 4))
  image = decode_and_resize(tf.constant([encode_image(rgba, 'PNG')]), 75).numpy()[0]
  np.testing.assert_array_equal(image, rgba[..., :3])


def test_pixel_bytes_round_trip_is_exact_and_compact():
  images = tf.constant(random_pixels((3, 75, 75, 3)))
  data = pixels_to_bytes(images)
  assert [len(d) for d in data.numpy()] == [75 * 75 * 3] * 3
  np.testing.assert_array_equal(bytes_to_pixels(data, 75).numpy(), images.numpy().astype(np.float32))


def test_custom_image_size():
  data = encode_image(random_pixels((10, 10, 3)), 'PNG')
  outputs = preprocessing_fn({'image': tf.constant([[data]]), 'label': tf.constant([[0]], tf.int64)},
                             {'image_size': 96})
  assert len(outputs['image'].numpy()[0]) == 96 * 96 * 3
