"""EXIF orientation of JPEG bytes, honoured by the graph (`trainer.orientation`).

Photos: crops of scikit-learn's sample photos, stored sideways by Pillow with the tag
that turns them upright again, as a phone stores them. Pillow's
`ImageOps.exif_transpose` of the same bytes is the reference.
"""

import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps
from sklearn.datasets import load_sample_images

from tests.tiny_model import export_tiny_model
from trainer import export
from trainer.orientation import MAX_JPEG_SEGMENTS, jpeg_orientation, upright
from trainer.preprocessing import decode_and_resize

ORIENTATION = 0x0112
# How a phone stores an upright picture for each tag: the inverse of the tag's turn.
STORED = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
          6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_270}


@pytest.fixture(scope='module')
def photo() -> np.ndarray:
  """An upright, non-square photo (240 tall, 320 wide)."""
  return load_sample_images().images[0][100:340, 200:520]


def _jpeg(image: Image.Image, **save_args) -> bytes:
  out = io.BytesIO()
  image.save(out, 'JPEG', quality=95, **save_args)
  return out.getvalue()


def _sideways(photo: np.ndarray, orientation: int) -> bytes:
  """`photo` stored as a phone would with this orientation tag."""
  stored = Image.fromarray(photo)
  if orientation in STORED:
    stored = stored.transpose(STORED[orientation])
  exif = Image.Exif()
  exif[ORIENTATION] = orientation
  return _jpeg(stored, exif=exif.tobytes())


def _pillow_upright(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(ImageOps.exif_transpose(image).convert('RGB'))


def _tf_upright(data: bytes) -> np.ndarray:
  data = tf.constant(data)
  return upright(tf.io.decode_jpeg(data, channels=3), jpeg_orientation(data)).numpy()


def _mean_error(a: np.ndarray, b: np.ndarray) -> float:
  assert a.shape == b.shape
  return float(np.abs(a.astype(np.int64) - b).mean())


@pytest.mark.parametrize('orientation', range(1, 9))
def test_each_orientation_is_turned_as_pillow_exif_transpose(photo, orientation):
  data = _sideways(photo, orientation)
  assert int(jpeg_orientation(tf.constant(data))) == orientation
  ours, pillows = _tf_upright(data), _pillow_upright(data)
  assert ours.shape == pillows.shape == photo.shape
  assert _mean_error(ours, pillows) < 2.0  # two JPEG decoders (DCT methods) on one file
  assert _mean_error(ours, photo) < 4.0  # and the picture is upright again
  if orientation != 1:  # what tf.io.decode_jpeg alone gave
    as_stored = tf.io.decode_jpeg(data, channels=3).numpy()
    assert as_stored.shape != photo.shape or _mean_error(as_stored, photo) > 20


@pytest.mark.parametrize('orientation', range(2, 9))
def test_decode_and_resize_gives_the_upright_pixels(photo, orientation):
  sideways = decode_and_resize(tf.constant([_sideways(photo, orientation)]), 75).numpy()[0]
  upright_jpeg = decode_and_resize(tf.constant([_jpeg(Image.fromarray(photo))]), 75).numpy()[0]
  assert _mean_error(sideways, upright_jpeg) < 2.0
  as_stored = decode_and_resize(tf.constant([_jpeg(Image.fromarray(photo).transpose(
      STORED[orientation]))]), 75).numpy()[0]
  assert _mean_error(as_stored, upright_jpeg) > 20  # the check can fail


# --- Hand-made EXIF blocks: what the parser makes of well-formed and broken ones. ---

def _entry(tag: int, kind: int, count: int, value: int, order: str) -> bytes:
  value_field = struct.pack(order + 'H', value) + b'\0\0' if kind == 3 else struct.pack(
      order + 'I', value)
  return struct.pack(order + 'HHI', tag, kind, count) + value_field


def _tiff(entries, order: str = '<', declared=None, mark=None, ifd_offset: int = 8) -> bytes:
  """A TIFF block: header, IFD0 with `entries` (tuples for _entry), next-IFD 0."""
  mark = mark or (b'II*\0' if order == '<' else b'MM\0*')
  body = b''.join(_entry(*entry, order) for entry in entries)
  count = len(entries) if declared is None else declared
  return (mark + struct.pack(order + 'I', ifd_offset) + struct.pack(order + 'H', count)
          + body + struct.pack(order + 'I', 0))


def _segment(marker: int, payload: bytes) -> bytes:
  return bytes([0xFF, marker]) + struct.pack('>H', len(payload) + 2) + payload


def _exif(tiff: bytes) -> bytes:
  return _segment(0xE1, b'Exif\0\0' + tiff)


XMP = _segment(0xE1, b'http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>')
ICC = _segment(0xE2, b'ICC_PROFILE\0\x01\x01' + b'\0' * 64)
COMMENT = _segment(0xFE, b'made by a test')


def _with_segments(photo: np.ndarray, *segments: bytes, after_jfif: bool = True) -> bytes:
  """A Pillow JPEG of a small photo (no EXIF) with `segments` spliced in after its JFIF
  APP0 (or right after SOI)."""
  data = _jpeg(Image.fromarray(photo[:48, :64]))
  assert data[2:4] == b'\xff\xe0'
  at = 4 + struct.unpack('>H', data[4:6])[0] if after_jfif else 2
  return data[:at] + b''.join(segments) + data[at:]


SIX = (ORIENTATION, 3, 1, 6)
CASES = {  # name -> (segments spliced after JFIF, orientation the graph reads)
    'no exif': ((), 1),
    'little endian': ((_exif(_tiff([SIX], '<')),), 6),
    'big endian': ((_exif(_tiff([SIX], '>')),), 6),
    'among other tags': ((_exif(_tiff([(0x010F, 2, 4, 0), SIX, (0x0131, 2, 4, 0)], '>')),), 6),
    'other APPn and a comment first': ((XMP, ICC, COMMENT, _exif(_tiff([SIX]))), 6),
    'duplicate tag: the last wins': ((_exif(_tiff([(ORIENTATION, 3, 1, 3), SIX])),), 6),
    'second exif segment ignored': ((_exif(_tiff([])), _exif(_tiff([SIX]))), 1),
    'bad byte-order mark': ((_exif(_tiff([SIX], mark=b'XX*\0')),), 1),
    'big-endian mark, little-endian data': ((_exif(_tiff([SIX], '<', mark=b'MM\0*')),), 1),
    'IFD offset past the segment': ((_exif(_tiff([SIX], ifd_offset=4000)),), 1),
    'IFD cut before the tag': ((_exif(_tiff([(0x010F, 2, 4, 0), SIX])[:8 + 2 + 12 + 6]),), 1),
    'IFD cut after the tag': ((_exif(_tiff([SIX, (0x010F, 2, 4, 0)])[:8 + 2 + 12 + 5]),), 6),
    'entry count overflow': ((_exif(_tiff([SIX], declared=0xFFFF)),), 6),
    'value count overflow': ((_exif(_tiff([(ORIENTATION, 3, 0xFFFFFFFF, 6)])),), 1),
    'tag of type LONG': ((_exif(_tiff([(ORIENTATION, 4, 1, 6)])),), 1),
    'value 0': ((_exif(_tiff([(ORIENTATION, 3, 1, 0)])),), 1),
    'value 9': ((_exif(_tiff([(ORIENTATION, 3, 1, 9)])),), 1),
    'value 0xFFFF': ((_exif(_tiff([(ORIENTATION, 3, 1, 0xFFFF)])),), 1),
    'empty exif segment': ((_segment(0xE1, b'Exif\0\0'),), 1),
    'exif after more segments than are walked': (
        (*[COMMENT] * MAX_JPEG_SEGMENTS, _exif(_tiff([SIX]))), 1),
}
# Pillow reads these two differently: it accepts a LONG value and walks every segment.
PILLOW_DIFFERS = {'tag of type LONG', 'exif after more segments than are walked'}


def _pillow_orientation(data: bytes) -> int:
  try:
    with Image.open(io.BytesIO(data)) as image:
      value = image.getexif().get(ORIENTATION, 1)
  except Exception:  # pylint: disable=broad-except  # an unreadable EXIF block: as stored
    return 1
  return value if value in range(1, 9) else 1


@pytest.mark.parametrize('name', CASES)
def test_exif_blocks_read_as_expected_and_never_fail_the_decode(photo, name):
  segments, expected = CASES[name]
  data = _with_segments(photo, *segments)
  assert int(jpeg_orientation(tf.constant(data))) == expected
  if name not in PILLOW_DIFFERS:
    assert _pillow_orientation(data) == expected
  image = decode_and_resize(tf.constant([data]), 75).numpy()[0]
  upright_small = decode_and_resize(
      tf.constant([_jpeg(Image.fromarray(photo[:48, :64]))]), 75).numpy()[0]
  if expected == 1:
    assert _mean_error(image, upright_small) < 1.0  # decodes as it did before
  else:  # 6 = turned 90 degrees clockwise
    assert _mean_error(image, np.rot90(upright_small, -1)) < 1.0


def test_exif_right_after_soi_and_fill_bytes_before_a_marker(photo):
  data = _with_segments(photo, b'\xff\xff', _exif(_tiff([SIX])), after_jfif=False)
  assert int(jpeg_orientation(tf.constant(data))) == 6


def test_cut_or_scrambled_headers_never_fail_the_read(photo):
  """Every prefix of an EXIF JPEG's first 300 bytes, and 300 copies with random bytes
  of the Exif segment changed: an orientation in 1-8, never an error."""
  data = _with_segments(photo, XMP, _exif(_tiff([(0x010F, 2, 4, 0), SIX, (0x0131, 2, 4, 0)])))
  read = tf.function(jpeg_orientation, input_signature=[tf.TensorSpec([], tf.string)])
  exif_start = data.index(b'Exif')
  rng = np.random.default_rng(0)
  variants = [data[:n] for n in range(300)]
  for _ in range(300):
    scrambled = bytearray(data)
    for at in rng.integers(exif_start - 4, exif_start + 70, size=3):
      scrambled[at] = rng.integers(0, 256)
    variants.append(bytes(scrambled))
  values = [int(read(tf.constant(variant))) for variant in variants]
  assert set(values) <= set(range(1, 9))
  assert values[-1] in range(1, 9) and int(read(tf.constant(data))) == 6


@pytest.mark.parametrize('image_format', ['PNG', 'GIF', 'BMP'])
def test_other_formats_decode_as_stored(photo, image_format):
  """Only JPEG orientation is read: a PNG's eXIf chunk (which Pillow would apply) too is
  ignored."""
  stored = Image.fromarray(photo).transpose(STORED[6])
  exif = Image.Exif()
  exif[ORIENTATION] = 6
  out, plain = io.BytesIO(), io.BytesIO()
  stored.save(out, image_format, **({'exif': exif.tobytes()} if image_format == 'PNG' else {}))
  stored.save(plain, image_format)
  data = out.getvalue()
  assert int(jpeg_orientation(tf.constant(data))) == 1
  np.testing.assert_array_equal(decode_and_resize(tf.constant([data]), 75),
                                decode_and_resize(tf.constant([plain.getvalue()]), 75))


# --- The exported model: the served probabilities for sideways bytes are the upright ones. ---

@pytest.fixture(scope='module')
def signatures(tmp_path_factory):
  return tf.saved_model.load(export_tiny_model(str(tmp_path_factory.mktemp('exif')))).signatures


def _served(signatures, name: str, images) -> np.ndarray:
  if name == 'serving_default':
    examples = [tf.train.Example(features=tf.train.Features(feature={
        'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}))
                .SerializeToString() for image in images]
    outputs = signatures[name](examples=tf.constant(examples))
  else:
    outputs = signatures[name](image_bytes=tf.constant(images))
  return outputs['probabilities'].numpy()


@pytest.mark.parametrize('name', ['serving_default', export.IMAGE_BYTES_SIGNATURE])
def test_served_probabilities_for_sideways_bytes_equal_the_upright_picture(
    signatures, photo, name):
  upright_jpeg = _jpeg(Image.fromarray(photo))
  sideways = [_sideways(photo, orientation) for orientation in STORED]
  untagged = [_jpeg(Image.fromarray(photo).transpose(STORED[o])) for o in STORED]
  served = _served(signatures, name, [upright_jpeg, *sideways, *untagged])
  reference, tagged, as_stored = served[0], served[1:8], served[8:]
  tolerance = 1e-3  # JPEG re-encoding noise (turned pixels compress a little differently)
  np.testing.assert_allclose(tagged, np.broadcast_to(reference, tagged.shape), atol=tolerance)
  # Without the tag the same pixels give other probabilities: the check can fail.
  assert np.abs(as_stored - reference).max() > 10 * tolerance, (as_stored, reference)
