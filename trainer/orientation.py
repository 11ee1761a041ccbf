"""The EXIF orientation of JPEG bytes, read and applied with TensorFlow ops.

Phones store a photo as the sensor saw it and tag how to turn it upright (EXIF tag
0x0112 in IFD0 of the APP1 "Exif" segment). `tf.io.decode_jpeg` ignores the tag, so the
Transform graph, which every serving signature runs, turns the image itself: the same
bytes then give the same upright pixels in Transform, the Evaluator, `predict`, the
BulkInferrer and TF Serving, as Pillow's `ImageOps.exif_transpose` shows them.

Bounded work, never a failure: at most MAX_JPEG_SEGMENTS markers are walked, the tag is
searched only inside the first Exif segment (at most 64 KiB), and anything unexpected
(no Exif segment, junk between segments, a bad TIFF header, an IFD past the segment's
end, a tag of another type or count, a value outside 1-8) means orientation 1, the bytes
as stored. Not read: an orientation given only in XMP (Pillow also reads
`tiff:Orientation` from XMP).
"""

import tensorflow as tf

_JPEG_MAGIC = b'\xff\xd8\xff'
_EXIF_HEADER = b'Exif\0\0'
_APP1, _SOS, _EOI, _FILL = 0xE1, 0xDA, 0xD9, 0xFF
_STANDALONE = (0x01, *range(0xD0, 0xD8))  # TEM, RST0-7: markers without a length
_ORIENTATION_TAG, _SHORT = 0x0112, 3
_ENTRY_BYTES = 12
# Markers walked looking for the Exif segment. A camera or phone writes it first or
# second (after JFIF); a JPEG whose Exif segment comes later is read as stored.
MAX_JPEG_SEGMENTS = 64


def _bytes_at(data: tf.Tensor, pos: tf.Tensor, size: int) -> tf.Tensor:
  """`size` bytes of a scalar string from `pos` as int64, zeros past its end."""
  pos = tf.minimum(tf.cast(pos, tf.int64), tf.cast(tf.strings.length(data), tf.int64))
  raw = tf.io.decode_raw(tf.strings.substr(data, pos, size), tf.uint8)
  return tf.cast(tf.pad(raw, [[0, size - tf.size(raw)]]), tf.int64)


def _exif_segment(data: tf.Tensor) -> tf.Tensor:
  """The first Exif APP1 segment's TIFF bytes (after "Exif\\0\\0"), or '' when there is
  none among the first MAX_JPEG_SEGMENTS markers."""
  exif_header = tf.constant(list(_EXIF_HEADER), tf.int64)

  def step(pos, steps, start, length, done):
    del done  # read by `more`
    head = _bytes_at(data, pos, 4 + len(_EXIF_HEADER))
    marker = head[1]
    size = head[2] * 256 + head[3]  # big-endian, counts its own 2 bytes
    is_exif = tf.logical_and(tf.equal(marker, _APP1),
                             tf.reduce_all(tf.equal(head[4:], exif_header)))
    stop = tf.logical_or(tf.not_equal(head[0], 0xFF),
                         tf.logical_or(tf.equal(marker, _SOS), tf.equal(marker, _EOI)))
    skip = tf.where(tf.equal(marker, _FILL), tf.constant(1, tf.int64),
                    tf.where(tf.reduce_any(tf.equal(marker, _STANDALONE)),
                             tf.constant(2, tf.int64), 2 + size))
    found = tf.logical_and(is_exif, tf.logical_not(stop))
    return (pos + skip, steps + 1,
            tf.where(found, pos + 4 + len(_EXIF_HEADER), start),
            tf.where(found, size - 2 - len(_EXIF_HEADER), length),
            tf.logical_or(stop, found))

  def more(pos, steps, start, length, done):
    del pos, start, length
    return tf.logical_and(tf.logical_not(done), steps < MAX_JPEG_SEGMENTS)

  is_jpeg = tf.equal(tf.strings.substr(data, 0, len(_JPEG_MAGIC)), _JPEG_MAGIC)
  zero = tf.constant(0, tf.int64)
  _, _, start, length, _ = tf.while_loop(
      more, step, (tf.constant(2, tf.int64), zero, zero, zero, tf.logical_not(is_jpeg)),
      parallel_iterations=1)
  start = tf.minimum(start, tf.cast(tf.strings.length(data), tf.int64))  # a cut file
  return tf.strings.substr(data, start, tf.maximum(length, 0))


def _tiff_orientation(tiff: tf.Tensor) -> tf.Tensor:
  """The orientation in IFD0 of a TIFF block (scalar string), 1 when there is none."""
  size = tf.cast(tf.strings.length(tiff), tf.int64)
  raw = tf.cast(tf.io.decode_raw(tiff, tf.uint8), tf.int64)
  raw = tf.pad(raw, [[0, 8]])  # short blocks read as zeros
  order = raw[:4]
  is_little = tf.reduce_all(tf.equal(order, [0x49, 0x49, 42, 0]))   # II*\0
  is_big = tf.reduce_all(tf.equal(order, [0x4D, 0x4D, 0, 42]))      # MM\0*

  def uint(offsets, width):
    """Unsigned ints of `width` bytes at `offsets` (any shape), in the block's byte order."""
    offsets = tf.minimum(offsets, size)
    parts = [tf.gather(raw, offsets + i) for i in range(width)]
    little = sum(part * 256 ** i for i, part in enumerate(parts))
    big = sum(part * 256 ** (width - 1 - i) for i, part in enumerate(parts))
    return tf.where(is_little, little, big)

  ifd = uint(tf.constant(4, tf.int64), 4)
  declared = uint(ifd, 2)
  whole_entries = tf.maximum(size - ifd - 2, 0) // _ENTRY_BYTES  # a cut entry is not read
  entries = tf.where(ifd + 2 <= size, tf.minimum(declared, whole_entries), 0)
  starts = ifd + 2 + _ENTRY_BYTES * tf.range(entries)
  is_orientation = tf.logical_and(
      tf.logical_and(tf.equal(uint(starts, 2), _ORIENTATION_TAG),
                     tf.equal(uint(starts + 2, 2), _SHORT)),
      tf.equal(uint(starts + 4, 4), 1))
  # A single SHORT sits in the first 2 bytes of the value field; index 0 is "no tag".
  values = tf.concat([[1], uint(starts + 8, 2)], 0)
  # The last entry wins, as in Pillow (a later duplicate overwrites an earlier one).
  last = tf.reduce_max(tf.concat([[-1], tf.where(is_orientation, tf.range(entries), -1)], 0))
  value = tf.gather(values, 1 + last)
  valid = tf.logical_and(tf.logical_or(is_little, is_big),
                         tf.logical_and(value >= 1, value <= 8))
  return tf.cast(tf.where(valid, value, 1), tf.int32)


def jpeg_orientation(data: tf.Tensor) -> tf.Tensor:
  """EXIF orientation (int32 1-8) of one encoded image (scalar string); 1 for anything
  but a JPEG with a readable orientation tag."""
  return _tiff_orientation(_exif_segment(data))


def upright(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
  """`image` [H, W, C] as stored, turned as its EXIF `orientation` says (as Pillow's
  `ImageOps.exif_transpose`): 5-8 swap height and width."""
  # tf.reverse and tf.transpose only: tf.image's rot90 asserts on the shape inside
  # map_fn's loop, which makes grappler log a warning on every model load.
  swapped = lambda: tf.transpose(image, [1, 0, 2])  # pylint: disable=unnecessary-lambda-assignment
  turns = [
      lambda: image,                                 # 1 upright
      lambda: tf.reverse(image, [1]),                # 2 mirrored left-right
      lambda: tf.reverse(image, [0, 1]),             # 3 rotated 180
      lambda: tf.reverse(image, [0]),                # 4 mirrored top-bottom
      swapped,                                       # 5 transposed
      lambda: tf.reverse(swapped(), [1]),            # 6 rotate 90 clockwise
      lambda: tf.reverse(swapped(), [0, 1]),         # 7 transverse
      lambda: tf.reverse(swapped(), [0]),            # 8 rotate 90 counter-clockwise
  ]
  index = tf.where(tf.logical_and(orientation >= 1, orientation <= 8), orientation - 1, 0)
  return tf.switch_case(tf.cast(index, tf.int32), turns)
