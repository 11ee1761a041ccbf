"""Request limits for the serving signatures, checked in the graph before any decoding.

An image's header says how many pixels its decoder will allocate: PNG's IHDR, JPEG's
SOF (read by `tf.io.extract_jpeg_shape`, which parses markers only), BMP's info
header, GIF's logical screen and every frame descriptor (giflib keeps all frames of a
GIF in memory, whatever TensorFlow returns). `checked_images` refuses a request over a
limit with `InvalidArgumentError` naming the limit, before a single pixel is decoded.
"""

import tensorflow as tf

from contract.settings import ServingConfig

_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_GIF_MAGIC = b'GIF8'
_BMP_MAGIC = b'BM'
_JPEG_MAGIC = b'\xff\xd8\xff'
_HEADER_PAD = b'\0' * 32  # short inputs read as zeros instead of failing the slice
_GIF_IMAGE, _GIF_EXTENSION = 0x2C, 0x21
# Steps of the GIF block walk per image (each: a frame or extension header, or a run of
# full 255-byte data sub-blocks): a 1,000-frame animation takes about 6,000. A GIF cut
# into more pieces is refused, which bounds the walk's time (~1 s per image here).
MAX_GIF_BLOCKS = 20_000


def _uint(data: tf.Tensor, start: int, size: int, big_endian: bool) -> tf.Tensor:
  """Unsigned integer of `size` bytes at `start` of a scalar string, as int64."""
  raw = tf.io.decode_raw(tf.strings.substr(data, start, size), tf.uint8)
  raw = tf.cast(raw, tf.int64)
  weights = tf.constant([256 ** i for i in range(size)], tf.int64)
  return tf.reduce_sum(raw * (tf.reverse(weights, [0]) if big_endian else weights))


def _signed32_abs(value: tf.Tensor) -> tf.Tensor:
  return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))


def _png_pixels(data: tf.Tensor) -> tf.Tensor:
  return _uint(data, 16, 4, True) * _uint(data, 20, 4, True)


def _bmp_pixels(data: tf.Tensor) -> tf.Tensor:
  return _signed32_abs(_uint(data, 18, 4, False)) * _signed32_abs(_uint(data, 22, 4, False))


def _jpeg_pixels(data: tf.Tensor) -> tf.Tensor:
  shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
  return shape[0] * shape[1]


def _gif_pixels(data: tf.Tensor) -> tf.Tensor:
  """max(logical screen, sum of all frame areas); -1 when the walk takes more than
  MAX_GIF_BLOCKS steps."""
  raw = tf.io.decode_raw(data, tf.uint8)  # one byte per byte: no wider copy
  size = tf.size(raw, out_type=tf.int64)
  raw = tf.pad(raw, [[0, 16]])

  def at(pos, offset=0):
    index = tf.minimum(tf.cast(pos, tf.int64) + offset, size)
    return tf.cast(tf.gather(raw, index), tf.int64)

  def le16(pos, offset):
    return at(pos, offset) + 256 * at(pos, offset + 1)

  def color_table(flags):
    return tf.where(flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), flags % 8),
                    tf.constant(0, tf.int64))

  def full_blocks(pos):
    """How many 255-byte data sub-blocks follow one another from `pos` (at most 4096)."""
    lengths = tf.strided_slice(raw, [pos], [tf.minimum(pos + 256 * 4096, size)], [256])
    return tf.argmax(tf.concat([tf.not_equal(lengths, 255), [True]], 0), output_type=tf.int64)

  def step(pos, in_data, area, steps):
    """One block header (image descriptor or extension), or a run of data sub-blocks."""
    byte = at(pos)
    is_image = tf.logical_and(tf.logical_not(in_data), tf.equal(byte, _GIF_IMAGE))
    header_end = tf.where(is_image, pos + 11 + color_table(at(pos, 9)), pos + 2)
    run = full_blocks(pos)
    data_end = tf.where(run > 0, pos + 256 * run, pos + 1 + byte)
    frame = tf.where(is_image, le16(pos, 5) * le16(pos, 7), tf.constant(0, tf.int64))
    still_in_data = tf.logical_or(tf.logical_not(in_data), byte > 0)
    return (tf.where(in_data, data_end, header_end), still_in_data, area + frame, steps + 1)

  def more(pos, in_data, area, steps):
    del area
    header = tf.logical_or(tf.equal(at(pos), _GIF_IMAGE), tf.equal(at(pos), _GIF_EXTENSION))
    return tf.logical_and(tf.logical_and(pos < size, steps <= MAX_GIF_BLOCKS),
                          tf.logical_or(in_data, header))

  start = 13 + color_table(at(0, 10))
  _, _, frames, steps = tf.while_loop(
      more, step, (start, tf.constant(False), tf.constant(0, tf.int64),
                   tf.constant(0, tf.int64)), parallel_iterations=1)
  screen = le16(0, 6) * le16(0, 8)
  return tf.where(steps > MAX_GIF_BLOCKS, tf.constant(-1, tf.int64), tf.maximum(screen, frames))


def declared_pixels(data: tf.Tensor) -> tf.Tensor:
  """Pixels the header of one encoded image (scalar string) declares, as int64: 0 for a
  format TensorFlow cannot decode (decoding then fails with its own message), -1 for a
  GIF over MAX_GIF_BLOCKS."""
  head = tf.strings.substr(data, 0, 8) + _HEADER_PAD
  padded = data + _HEADER_PAD

  def starts_with(magic):
    return tf.equal(tf.strings.substr(head, 0, len(magic)), magic)

  branches = [(starts_with(_PNG_MAGIC), lambda: _png_pixels(padded)),
              (starts_with(_JPEG_MAGIC), lambda: _jpeg_pixels(data)),
              (starts_with(_GIF_MAGIC), lambda: _gif_pixels(data)),
              (starts_with(_BMP_MAGIC), lambda: _bmp_pixels(padded))]
  return tf.case(branches, default=lambda: tf.constant(0, tf.int64), exclusive=False)


def _refuse_unless(condition: tf.Tensor, message: str) -> tf.Operation:
  return tf.debugging.Assert(condition, [f'Refused: {message}'])


def checked_images(images: tf.Tensor, limits: ServingConfig) -> tf.Tensor:
  """`images` (encoded, any shape) unchanged once every limit holds; otherwise the graph
  fails with InvalidArgumentError naming the limit. Checks the batch size first, then
  each image's byte size, then the pixels its header declares; decoding that depends on
  the result starts only after all checks passed."""
  flat = tf.reshape(images, [-1])
  batch_ok = _refuse_unless(
      tf.size(flat) <= limits.max_batch,
      f'more than serving.max_batch={limits.max_batch} images in one request')
  with tf.control_dependencies([batch_ok]):
    bytes_ok = _refuse_unless(
        tf.reduce_all(tf.strings.length(flat) <= limits.max_image_bytes),
        f'an image is over serving.max_image_bytes={limits.max_image_bytes} bytes')
  with tf.control_dependencies([bytes_ok]):
    pixels = tf.map_fn(declared_pixels, flat,
                       fn_output_signature=tf.int64, parallel_iterations=1)
  gif_ok = _refuse_unless(
      tf.reduce_all(pixels >= 0),
      f'a GIF is cut into more than {MAX_GIF_BLOCKS} blocks')
  pixels_ok = _refuse_unless(
      tf.reduce_all(pixels <= limits.max_image_pixels),
      f'an image header declares more than serving.max_image_pixels='
      f'{limits.max_image_pixels} pixels')
  with tf.control_dependencies([gif_ok, pixels_ok]):
    return tf.identity(images)
