"""Reads one image file safely and turns it into example bytes.

Pure Python (no Beam, no TFX): `read_image` decides, for one listed file, the image
bytes an example holds or the fixed reason it is refused (`Refused.reason`); the
Beam ExampleGen (components/example_gen/ingest_pipeline.py) calls it for every file.

On a local disk nothing is checked and then opened by name: each path is opened
beneath the data root one component at a time with O_NOFOLLOW, the open descriptor
is fstat-ed, and at most the byte limit + 1 is read, so a file swapped for a
symlink, a FIFO or a device while ingestion runs is refused, never followed or read
forever. Other filesystems (gs://, s3://) are read through Beam's FileSystems with the
same byte limit.

Content decides the format: only JPEG, PNG, GIF and BMP bytes are accepted, whatever
the extension, and Pillow is only ever asked to open those four formats. Every written
image decodes with the model's own decoder (`trainer.preprocessing.decode_and_resize`,
which honours a JPEG's EXIF orientation, as every serving signature does) to the upright
image: files TensorFlow cannot read as they are (CMYK, animated, 1-bit, ...) are
re-encoded as PNG, turned as the decoder would turn the original (its orientation
semantics, `trainer.orientation`, not Pillow's: a PNG's eXIf or an XMP-only tag is
not applied anywhere), and images larger than `max_side`
pixels on their long side are stored downscaled (`store_image`), so that every later
step decodes a small image and every stored image passes the serving limits.

OS and tool sidecar files (hidden files such as `._x.jpg` and `.DS_Store`, hidden
folders, `Thumbs.db`, `.json`/`.xmp` sidecars: anything hidden or without an image
extension) are refused as *ignored* (`Refused.ignored`): listed, never counted as bad.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import stat
import struct
import zlib
from typing import Optional

import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from components.example_gen.image_listing import HIDDEN_FOLDER, display, is_local
from contract.settings import IngestOptions, max_stored_bytes
from contract.features import (CLASS_NAME_KEY, FILENAME_KEY, IMAGE_BYTE_SIZE_KEY,
                               IMAGE_EXTENSIONS, IMAGE_FORMAT_KEY, IMAGE_HEIGHT_KEY, IMAGE_KEY,
                               IMAGE_WIDTH_KEY, LABEL_KEY)
from trainer import orientation

# The only formats read: what tf.io.decode_image (Transform, serving) decodes.
IMAGE_FORMATS = ('JPEG', 'PNG', 'GIF', 'BMP')
_SIGNATURES = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'GIF87a', b'GIF89a', b'BM')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# Pillow's turn for each EXIF orientation (as ImageOps.exif_transpose).
_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
          6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}
# What the quarantine says about common sidecar files (all of them are ignored).
_SIDECARS = {'.ds_store': 'macOS folder metadata', 'thumbs.db': 'Windows thumbnail cache',
             'desktop.ini': 'Windows folder settings', '.json': 'metadata sidecar (e.g. Google Takeout)',
             '.xmp': 'metadata sidecar (XMP)', '.aae': 'iOS edit sidecar', '.thm': 'camera thumbnail'}
# Reasons that mark an OS or tool file rather than a bad image: never counted as skipped.
IGNORED_REASONS = ('hidden file', HIDDEN_FOLDER, 'not an image file extension')
# A JPEG re-encoded at this quality when it is downscaled (other formats: PNG).
_JPEG_QUALITY = 95
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0)


class Refused(ValueError):
  """A file that cannot become an example: `reason` is a fixed category."""

  def __init__(self, reason: str, detail: str = ''):
    super().__init__(reason)
    self.reason = reason
    self.detail = detail

  @property
  def ignored(self) -> bool:
    """An OS or tool file (sidecar, hidden), not a bad image."""
    return self.reason in IGNORED_REASONS


@dataclasses.dataclass(frozen=True)
class StoredImage:
  """The bytes an example holds, and whether they were downscaled from the file's."""
  data: bytes
  downscaled: bool = False


def sidecar_detail(path: str) -> str:
  """What kind of OS or tool file `path` is, for the quarantine ('' when unknown)."""
  name = os.path.basename(path.rstrip('/')).lower()
  if name.startswith('._'):
    return 'macOS AppleDouble sidecar'
  return _SIDECARS.get(name) or _SIDECARS.get(os.path.splitext(name)[1], '')


# Reading bytes ------------------------------------------------------------------------

def _open_beneath(real_root: str, relpath: str) -> int:
  """Opens `relpath` below `real_root` one component at a time, never following a symlink."""
  parts = relpath.split('/')
  fd = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, 'O_CLOEXEC', 0))
  try:
    for part in parts[:-1]:
      next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
      os.close(fd)
      fd = next_fd
    return os.open(parts[-1], _OPEN_FLAGS, dir_fd=fd)
  finally:
    os.close(fd)


def _symlink_target(path: str, real_root: str) -> str:
  """The target's path relative to the root, for a symlink that stays inside it."""
  try:
    os.stat(path)
  except OSError as e:
    raise Refused('symlink loop' if e.errno == errno.ELOOP else 'broken symlink',
                  e.strerror or '') from None
  target = os.path.realpath(path)
  if os.path.commonpath([real_root, target]) != real_root:
    raise Refused('symlink points outside the data folder')
  if os.path.isdir(target):
    raise Refused('symlink to a folder')
  return os.path.relpath(target, real_root).replace(os.sep, '/')


def _read_local(path: str, real_root: str, max_bytes: int, relpath: Optional[str]) -> bytes:
  if relpath is None:
    relpath = os.path.relpath(os.path.abspath(path), real_root).replace(os.sep, '/')
  if relpath.startswith('../'):
    raise Refused('symlink points outside the data folder')
  try:
    try:
      fd = _open_beneath(real_root, relpath)
    except OSError as e:
      if e.errno not in (errno.ELOOP, errno.ENOTDIR) or not os.path.islink(path):
        raise
      # A symlink inside the root: open its resolved target the same way, once.
      fd = _open_beneath(real_root, _symlink_target(path, real_root))
  except OSError as e:
    if e.errno in (errno.ELOOP, errno.ENOTDIR):
      raise Refused('symlink points outside the data folder', 'path changed while reading') from e
    raise Refused(f'unreadable: {e.strerror}') from e
  with os.fdopen(fd, 'rb') as f:
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
      raise Refused('not a regular file')  # a FIFO would block, a device never end
    if st.st_size > max_bytes:
      raise Refused('file too large', f'{st.st_size} bytes > {max_bytes}')
    try:
      data = f.read(max_bytes + 1)
    except OSError as e:
      raise Refused(f'unreadable: {e.strerror}') from e
  if len(data) > max_bytes:
    raise Refused('file too large', f'more than {max_bytes} bytes (the file grew)')
  return data


def _read_remote(path: str, max_bytes: int) -> bytes:
  try:
    with FileSystems.open(path, compression_type='uncompressed') as f:
      data = f.read(max_bytes + 1)
  except Exception as e:  # pylint: disable=broad-except  # each filesystem raises its own
    raise Refused('unreadable: ' + (str(e).splitlines() or ['error'])[0][:200]) from e
  if len(data) > max_bytes:
    raise Refused('file too large', f'more than {max_bytes} bytes (the object grew)')
  return data


def refuse_hidden(path: str) -> None:
  """Refused('hidden file') for a name starting with '.' (.DS_Store, ._x.jpg, ...)."""
  if os.path.basename(path.rstrip('/')).startswith('.'):
    raise Refused('hidden file', sidecar_detail(path))


def refuse_ignored(path: str) -> None:
  """Refuses, as ignored, a hidden file or one without an image extension."""
  refuse_hidden(path)
  if not path.lower().endswith(IMAGE_EXTENSIONS):
    raise Refused('not an image file extension', sidecar_detail(path))


def read_bytes(path: str, real_root: str, max_bytes: int, relpath: Optional[str] = None) -> bytes:
  """The file's bytes (at most `max_bytes`), or Refused: not a regular file, a symlink
  that is broken or leaves the root, unreadable, too large. A local file is opened
  beneath `real_root` at `relpath` (default: its path relative to `real_root`; give it
  when the data root was reached through a symlink)."""
  if not is_local(path):
    return _read_remote(path, max_bytes)
  return _read_local(path, real_root, max_bytes, relpath)


# Checking images ----------------------------------------------------------------------

def _png_chunk_error(data: bytes) -> Optional[str]:
  """The first PNG chunk whose CRC is wrong (Pillow does not check IDAT's, TensorFlow does)."""
  pos = len(_PNG_SIGNATURE)
  while pos + 12 <= len(data):
    (length,) = struct.unpack('>I', data[pos:pos + 4])
    end = pos + 12 + length
    if end > len(data):
      return None  # truncated: reported by the decoder
    kind = data[pos + 4:pos + 8]
    (crc,) = struct.unpack('>I', data[end - 4:end])
    if zlib.crc32(data[pos + 4:end - 4]) & 0xFFFFFFFF != crc:
      return f'bad checksum in {kind.decode("latin-1")!r} chunk'
    if kind == b'IEND':
      break
    pos = end
  return None


def _tf_decodes(data: bytes, width: int, height: int) -> bool:
  """Whether the Transform and serving decoder read the bytes as they are, at this size."""
  try:
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
  except (tf.errors.OpError, ValueError):
    return False
  return tuple(image.shape[:2]) == (height, width)


def _orientation(data: bytes) -> int:
  """The EXIF orientation the model's decoder applies to these bytes (JPEG only; 1 for
  every other format, and for XMP-only or malformed tags): re-encoded images are turned
  exactly as the serving graph would turn the original."""
  return int(orientation.jpeg_orientation(tf.constant(data)))


def _upright_rgb(image: Image.Image, turn: int) -> Image.Image:
  """8-bit RGB, turned by EXIF orientation `turn`, 16-bit samples scaled, alpha dropped."""
  image.load()
  if turn in _TURNS:
    image = image.transpose(_TURNS[turn])
  if image.mode.startswith('I') or image.mode == 'F':
    pixels = np.asarray(image)
    if image.mode != 'F':
      pixels = pixels.astype(np.int64) >> 8  # 16-bit samples
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), 'L')
  return image.convert('RGB')


def _encode(image: Image.Image, jpeg: bool) -> bytes:
  out = io.BytesIO()
  if jpeg:
    image.save(out, format='JPEG', quality=_JPEG_QUALITY)
  else:
    image.save(out, format='PNG')
  return out.getvalue()


def _downscaled(probe: Image.Image, data: bytes, max_side: int) -> bytes:
  """The image upright, its long side at most `max_side`, re-encoded (JPEG stays JPEG)."""
  jpeg = probe.format == 'JPEG'
  if jpeg:  # decode at 1/2, 1/4 or 1/8 scale where that still covers max_side
    probe.draft('RGB', (max_side, max_side))
  image = _upright_rgb(probe, _orientation(data) if jpeg else 1)
  image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
  data = _encode(image, jpeg)
  if len(data) > max_stored_bytes(max_side):  # noise-like content: JPEG can outgrow PNG
    data = _encode(image, False)
  return data


def _needs_downscale(width: int, height: int, size: int, max_side: int) -> bool:
  return bool(max_side) and (max(width, height) > max_side or size > max_stored_bytes(max_side))


def store_image(data: bytes, max_pixels: int, max_side: int = 0) -> StoredImage:
  """The bytes an example stores (the file's own, or re-encoded), or Refused.

  Kept as they are when the model's decoder reads them upright at their size; images
  over `max_side` on their long side (or over `max_stored_bytes(max_side)`) are stored
  downscaled and upright (0: never downscaled)."""
  if not data.startswith(_SIGNATURES):
    raise Refused('not a readable image', 'content is not JPEG, PNG, GIF or BMP')
  if data.startswith(_PNG_SIGNATURE):
    chunk_error = _png_chunk_error(data)
    if chunk_error:
      raise Refused('corrupt image data', chunk_error)
  try:
    # Only the four formats: Pillow never hands a file to another plugin (EPS: Ghostscript).
    with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
      width, height = probe.size  # from the header: nothing decoded yet
      if width * height > max_pixels:
        raise Refused(f'too many pixels ({width}x{height} > {max_pixels})')
      animated = getattr(probe, 'is_animated', False)
      if _needs_downscale(width, height, len(data), max_side):
        return StoredImage(_downscaled(probe, data, max_side), downscaled=True)
      probe.load()  # full decode of the first frame: catches truncated and corrupt files
      # Kept as taken (EXIF included) when the model's decoder reads it as it is.
      if not animated and _tf_decodes(data, width, height):
        return StoredImage(data)
      # CMYK, 1-bit, animated (first frame), ...: re-encoded as the decoder would see them.
      turn = _orientation(data) if probe.format == 'JPEG' else 1
      return StoredImage(_encode(_upright_rgb(probe, turn), jpeg=False))
  except Refused:
    raise
  except MemoryError as e:  # never reported as corrupt data: the file may be fine
    raise Refused('not enough memory to decode', f'{len(data)} bytes') from e
  except Image.DecompressionBombError as e:
    raise Refused('decompression bomb (declared size too large)', str(e)) from e
  except Image.UnidentifiedImageError as e:
    if data.startswith(_SIGNATURES):
      raise Refused('corrupt image data', 'image header not readable') from e
    raise Refused('not a readable image', 'content is not JPEG, PNG, GIF or BMP') from e
  except Exception as e:  # pylint: disable=broad-except  # Pillow raises many types
    detail = f'{type(e).__name__}: {e}'
    if 'truncated' in str(e).lower():
      raise Refused('truncated image', detail) from e
    raise Refused('corrupt image data', detail) from e


def check_image(data: bytes, max_pixels: int, max_side: int = 0) -> bytes:
  """`store_image`'s bytes alone."""
  return store_image(data, max_pixels, max_side).data


def read_stored(path: str, real_root: str, max_pixels: int,
                max_bytes: int = IngestOptions.max_image_bytes, max_side: int = 0,
                relpath: Optional[str] = None) -> StoredImage:
  """The bytes an example stores for one listed file, or raises Refused(reason)."""
  refuse_hidden(path)
  if is_local(path) and os.path.islink(path):  # why a symlink is refused comes first
    _symlink_target(path, real_root)
  refuse_ignored(path)
  data = read_bytes(path, real_root, max_bytes, relpath)
  if not data:
    raise Refused('empty file')
  return store_image(data, max_pixels, max_side)


def read_image(path: str, real_root: str, max_pixels: int,
               max_bytes: int = IngestOptions.max_image_bytes, max_side: int = 0,
               relpath: Optional[str] = None) -> bytes:
  """`read_stored`'s bytes alone."""
  return read_stored(path, real_root, max_pixels, max_bytes, max_side, relpath).data


def make_example(image: bytes, label: int, class_name: str, relpath: str) -> tf.train.Example:
  """The raw example every ExampleGen path writes (feature keys from contract.features):
  the image, its label, and the stored image's size and format for data validation."""
  def strings(value: str) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode('utf-8')]))

  def integer(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

  with Image.open(io.BytesIO(image), formats=IMAGE_FORMATS) as probe:  # the header only
    (width, height), image_format = probe.size, probe.format
  feature = {
      IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
      LABEL_KEY: integer(label),
      CLASS_NAME_KEY: strings(class_name),
      FILENAME_KEY: strings(display(relpath)),
      IMAGE_HEIGHT_KEY: integer(height),
      IMAGE_WIDTH_KEY: integer(width),
      IMAGE_BYTE_SIZE_KEY: integer(len(image)),
      IMAGE_FORMAT_KEY: strings(image_format),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature))
