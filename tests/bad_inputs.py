"""The bad-input catalogue: writes every awkward image-folder case and what ingestion must do.

`generate(tmp)` writes `<tmp>/data` (four classes, one with a space and one with
a non-UTF-8 name) plus `<tmp>/outside` (targets of symlinks that leave the data
root) and returns a `Catalogue`: for every entry under the data root its
expected outcome, ACCEPTED or the exact quarantine reason, and for accepted
special images the upright RGB pixels the written example must decode to.

The folder-level builders at the end write layouts that must fail as a whole.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from typing import Callable, Dict, List, Optional, Union

import numpy as np
from PIL import Image

ACCEPTED = 'accepted'
MAX_IMAGE_PIXELS = 1_000_000
MAX_IMAGE_BYTES = 2_000_000
INGEST_KWARGS = {'eval_percent': 30, 'num_shards': 2, 'max_skipped_fraction': 0.6,
                 'max_image_pixels': MAX_IMAGE_PIXELS, 'max_image_bytes': MAX_IMAGE_BYTES}
CLASS_NAMES = ['cats', 'chi\\xe9ns', 'dogs', 'wild cats']  # b'chi\xe9ns' is not UTF-8
ROOT_CLASS = '(root)'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
IS_ROOT = hasattr(os, 'geteuid') and os.geteuid() == 0
# Root reads any file: the permission cases run without its override capabilities.
UNPRIVILEGED = ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--'] if IS_ROOT else []
Name = Union[str, bytes]


# Image builders ----------------------------------------------------------------

def encode(image: Union[np.ndarray, Image.Image], image_format: str = 'PNG', **save_args) -> bytes:
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  out = io.BytesIO()
  image.save(out, format=image_format, **save_args)
  return out.getvalue()


def random_pixels(shape, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def quadrants(height: int = 32, width: int = 48) -> np.ndarray:
  """Red, blue / green, white quadrants: any rotation or flip changes it."""
  pixels = np.zeros((height, width, 3), np.uint8)
  h, w = height // 2, width // 2
  pixels[:h, :w], pixels[:h, w:] = (255, 0, 0), (0, 0, 255)
  pixels[h:, :w], pixels[h:, w:] = (0, 255, 0), (255, 255, 255)
  return pixels


def png_chunk(kind: bytes, data: bytes) -> bytes:
  return (struct.pack('>I', len(data)) + kind + data
          + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))


def declared_png(width: int, height: int) -> bytes:
  """A valid PNG header declaring `width` x `height` RGB, with almost no pixel data."""
  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  return (PNG_SIGNATURE + png_chunk(b'IHDR', header)
          + png_chunk(b'IDAT', zlib.compress(b'\0' * 4096)) + png_chunk(b'IEND', b''))


def bad_crc(png: bytes, kind: bytes) -> bytes:
  """`png` with the CRC of its first `kind` chunk flipped."""
  start = png.index(kind) - 4
  (length,) = struct.unpack('>I', png[start:start + 4])
  data = bytearray(png)
  data[start + 8 + length] ^= 0xFF
  return bytes(data)


def palette_png() -> tuple:
  colours = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)]
  indices = np.zeros((32, 48), np.uint8)
  indices[:16, 24:], indices[16:, :24], indices[16:, 24:] = 1, 2, 3
  image = Image.fromarray(indices, 'P')
  image.putpalette([v for c in colours for v in c])
  return encode(image), np.array(colours, np.uint8)[indices]


def sixteen_bit_png() -> tuple:
  samples = (np.arange(30 * 40, dtype=np.uint32).reshape(30, 40) * 54).astype(np.uint16)
  image = Image.fromarray(samples)  # mode I;16
  grey = (samples >> 8).astype(np.uint8)
  return encode(image), np.stack([grey] * 3, -1)


def animated_gif() -> bytes:
  frames = [Image.new('RGB', (20, 10), colour) for colour in ('red', 'blue', 'green')]
  return encode(frames[0], 'GIF', save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg() -> tuple:
  """Stored 48 wide x 32 tall with EXIF orientation 6: upright it is 32 wide x 48 tall."""
  exif = Image.Exif()
  exif[0x0112] = 6  # rotate 90 degrees clockwise to display
  stored = quadrants()
  return encode(stored, 'JPEG', quality=95, exif=exif.tobytes()), np.rot90(stored, -1)


def one_bit_bmp() -> tuple:
  board = (np.indices((16, 24)).sum(axis=0) % 2 * 255).astype(np.uint8)
  return encode(Image.fromarray(board).convert('1'), 'BMP'), np.stack([board] * 3, -1)


# The catalogue -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Entry:
  relpath: Name                       # under the data root; bytes for non-UTF-8 names
  expected: str                       # ACCEPTED or the exact quarantine reason
  write: Callable[[bytes, 'Paths'], None]
  pixels: Optional[np.ndarray] = None  # upright RGB the example must decode to
  tolerance: float = 0.0              # mean absolute pixel difference allowed (JPEG)

  @property
  def key(self) -> str:
    """The path as ingestion reports it (non-UTF-8 bytes as \\xNN)."""
    raw = self.relpath if isinstance(self.relpath, bytes) else self.relpath.encode()
    return raw.decode('utf-8', 'backslashreplace')

  @property
  def class_name(self) -> str:
    parts = self.key.split('/')
    return parts[0] if len(parts) > 1 else ROOT_CLASS


@dataclasses.dataclass(frozen=True)
class Paths:
  root: bytes
  outside: bytes


def _bytes(data: bytes) -> Callable[[bytes, Paths], None]:
  def write(path: bytes, paths: Paths) -> None:
    del paths
    with open(path, 'wb') as f:
      f.write(data)
  return write


def _symlink(target: Callable[[Paths], bytes]) -> Callable[[bytes, Paths], None]:
  def write(path: bytes, paths: Paths) -> None:
    os.symlink(target(paths), path)
  return write


def _folder(files: Dict[str, bytes], mode: Optional[int] = None) -> Callable[[bytes, Paths], None]:
  def write(path: bytes, paths: Paths) -> None:
    del paths
    os.makedirs(path)
    for name, data in files.items():
      with open(os.path.join(path, name.encode()), 'wb') as f:
        f.write(data)
    if mode is not None:
      os.chmod(path, mode)
  return write


def _locked(data: bytes) -> Callable[[bytes, Paths], None]:
  def write(path: bytes, paths: Paths) -> None:
    _bytes(data)(path, paths)
    os.chmod(path, 0)
  return write


def _fifo(path: bytes, paths: Paths) -> None:
  del paths
  os.mkfifo(path)


def _sparse(size: int) -> Callable[[bytes, Paths], None]:
  def write(path: bytes, paths: Paths) -> None:
    del paths
    with open(path, 'wb') as f:
      f.truncate(size)  # no disk blocks used
  return write


def entries() -> List[Entry]:
  """Every catalogue entry, in a fixed order (test ids come from `Entry.key`)."""
  good_png = encode(random_pixels((24, 20, 3), 1))
  good_jpeg = encode(random_pixels((24, 20, 3), 2), 'JPEG')
  jpeg = encode(random_pixels((40, 30, 3), 3), 'JPEG')
  png = encode(random_pixels((30, 40, 3), 4))
  grey = random_pixels((30, 40), 5)
  rgba = random_pixels((30, 40, 4), 6)
  grey_alpha = random_pixels((30, 40, 2), 7)
  palette, palette_pixels = palette_png()
  sixteen, sixteen_pixels = sixteen_bit_png()
  rotated, upright = exif_rotated_jpeg()
  one_bit, one_bit_pixels = one_bit_bmp()
  red = np.zeros((10, 20, 3), np.uint8)
  red[..., 0] = 255

  catalogue = [
      # Plain good images: every class has some in both splits' worth.
      *[Entry(f'{c}/good{i}.{"png" if i % 2 else "jpg"}', ACCEPTED,
              _bytes(good_png if i % 2 else good_jpeg))
        for c in ('cats', 'dogs', 'wild cats') for i in range(4)],
      *[Entry(b'chi\xe9ns/good%d.png' % i, ACCEPTED, _bytes(good_png)) for i in range(4)],
      # Unusable files.
      Entry('cats/empty.jpg', 'empty file', _bytes(b'')),
      Entry('cats/truncated.jpg', 'truncated image', _bytes(jpeg[:len(jpeg) // 2])),
      Entry('cats/truncated.png', 'truncated image', _bytes(png[:len(png) // 2])),
      Entry('cats/bad_crc_idat.png', 'corrupt image data', _bytes(bad_crc(png, b'IDAT'))),
      Entry('cats/bad_crc_ihdr.png', 'corrupt image data', _bytes(bad_crc(png, b'IHDR'))),
      Entry('cats/text.jpg', 'not a readable image', _bytes(b'this is not a JPEG\n')),
      # Content decides the format, not the extension: only JPEG, PNG, GIF and BMP.
      Entry('cats/tiff.jpg', 'not a readable image', _bytes(encode(random_pixels((8, 8, 3)), 'TIFF'))),
      Entry('cats/photoshop.jpg', 'not a readable image', _bytes(b'8BPS\0\1' + bytes(26))),
      Entry('cats/jpeg2000.jpg', 'not a readable image',
            _bytes(b'\0\0\0\x0cjP  \r\n\x87\n' + bytes(32))),
      Entry('cats/postscript.jpg', 'not a readable image',
            _bytes(b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n')),
      Entry('cats/.DS_Store', 'hidden file', _bytes(b'\0\0\0\1Bud1')),
      Entry('cats/Thumbs.db', 'not an image file extension', _bytes(b'\xd0\xcf\x11\xe0')),
      Entry('cats/notes.txt', 'not an image file extension', _bytes(b'notes')),
      Entry('dogs/.hidden.png', 'hidden file', _bytes(png)),
      Entry('dogs/.thumbnails', 'hidden folder (not read)', _folder({'thumb.png': png})),
      Entry('dogs/pipe.jpg', 'not a regular file', _fifo),
      Entry('dogs/huge.png', 'file too large', _sparse(MAX_IMAGE_BYTES + 1)),
      Entry('dogs/bomb.png', 'decompression bomb (declared size too large)',
            _bytes(declared_png(100_000, 100_000))),
      Entry('dogs/too_big.png', f'too many pixels (1100x1000 > {MAX_IMAGE_PIXELS})',
            _bytes(encode(np.zeros((1000, 1100, 3), np.uint8)))),
      # Symlinks: inside the root they are fine, everything else is refused.
      Entry('dogs/alias.png', ACCEPTED, _symlink(lambda p: b'../cats/good1.png')),
      Entry('dogs/outside.png', 'symlink points outside the data folder',
            _symlink(lambda p: os.path.join(p.outside, b'secret.png'))),
      Entry('dogs/outside_dir', 'symlink points outside the data folder',
            _symlink(lambda p: p.outside)),
      Entry('dogs/inside_dir', 'symlink to a folder', _symlink(lambda p: b'../cats')),
      Entry('dogs/loop.png', 'symlink loop', _symlink(lambda p: b'loop.png')),
      Entry('dogs/broken.png', 'broken symlink', _symlink(lambda p: b'missing.png')),
      Entry('dogs/locked.png', 'unreadable: Permission denied', _locked(png)),
      Entry('dogs/locked_dir', 'unreadable folder: Permission denied', _folder({'a.png': png}, 0)),
      # Accepted although unusual: decoded to upright 8-bit RGB.
      Entry('wild cats/grey.png', ACCEPTED, _bytes(encode(grey)), np.stack([grey] * 3, -1)),
      Entry('wild cats/grey_alpha.png', ACCEPTED, _bytes(encode(Image.fromarray(grey_alpha, 'LA'))),
            np.stack([grey_alpha[..., 0]] * 3, -1)),
      Entry('wild cats/rgba.png', ACCEPTED, _bytes(encode(rgba)), rgba[..., :3]),
      Entry('wild cats/palette.png', ACCEPTED, _bytes(palette), palette_pixels),
      Entry('wild cats/cmyk.jpg', ACCEPTED,
            _bytes(encode(Image.fromarray(quadrants()).convert('CMYK'), 'JPEG', quality=95)),
            quadrants(), tolerance=8.0),
      Entry('wild cats/sixteen_bit.png', ACCEPTED, _bytes(sixteen), sixteen_pixels, tolerance=1.0),
      Entry('wild cats/animated.gif', ACCEPTED, _bytes(animated_gif()), red),
      Entry('wild cats/exif_rotated.jpg', ACCEPTED, _bytes(rotated), upright, tolerance=8.0),
      Entry('wild cats/one_bit.bmp', ACCEPTED, _bytes(one_bit), one_bit_pixels),
      # Awkward names: accepted, and the reports stay valid JSON.
      Entry(b'cats/caf\xe9.png', ACCEPTED, _bytes(png)),
      Entry('cats/my cat 1.png', ACCEPTED, _bytes(png)),
      Entry('dogs/sub folder/d\xf6g.png', ACCEPTED, _bytes(png)),  # UTF-8, non-ASCII
      Entry(b'dogs/sub folder/caf\xe9 bad.jpg', 'truncated image', _bytes(jpeg[:200])),
      # Outside any class folder.
      Entry('stray.jpg', 'not inside a class folder', _bytes(jpeg)),
      Entry('.DS_Store', 'hidden file', _bytes(b'\0\0\0\1Bud1')),
      Entry('.git', 'hidden folder (not read)', _folder({'HEAD': b'ref: refs/heads/main\n'})),
  ]
  return catalogue


@dataclasses.dataclass
class Catalogue:
  root: str
  entries: List[Entry]

  @property
  def expected(self) -> Dict[str, str]:
    """Reported path -> ACCEPTED or quarantine reason."""
    return {e.key: e.expected for e in self.entries}

  def classes(self) -> Dict[str, Dict[str, int]]:
    """class -> {'found', 'written', 'skipped', 'ignored'} as ingestion must count them
    (OS and tool files are ignored, not skipped)."""
    from components.example_gen.image_ingest import IGNORED_REASONS  # pylint: disable=import-outside-toplevel
    counts: Dict[str, Dict[str, int]] = {}
    for e in self.entries:
      c = counts.setdefault(e.class_name, {'found': 0, 'written': 0, 'skipped': 0, 'ignored': 0})
      c['found'] += 1
      if e.expected == ACCEPTED:
        c['written'] += 1
      else:
        c['ignored' if e.expected in IGNORED_REASONS else 'skipped'] += 1
    return counts


def generate(tmp: str) -> Catalogue:
  """Writes the whole catalogue under `<tmp>/data` (targets in `<tmp>/outside`)."""
  paths = Paths(root=os.path.join(os.fsencode(tmp), b'data'),
                outside=os.path.join(os.fsencode(tmp), b'outside'))
  os.makedirs(paths.outside)
  with open(os.path.join(paths.outside, b'secret.png'), 'wb') as f:
    f.write(encode(random_pixels((8, 8, 3))))
  written = []
  for entry in entries():
    raw = entry.relpath if isinstance(entry.relpath, bytes) else entry.relpath.encode()
    path = os.path.join(paths.root, raw)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    entry.write(path, paths)
    written.append(entry)
  return Catalogue(root=os.fsdecode(paths.root), entries=written)


def make_writable(root: str) -> None:
  """Undoes the permission cases so that the temp folder can be removed."""
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      path = os.path.join(dirpath, name)
      if not os.path.islink(path):
        os.chmod(path, 0o755)


# Folder-level failures: (builder, message the IngestError must match) -------------

def _images(folder: str, count: int, seed: int = 0) -> None:
  os.makedirs(folder, exist_ok=True)
  for i in range(count):
    with open(os.path.join(folder, f'{i}.png'), 'wb') as f:
      f.write(encode(random_pixels((12, 12, 3), seed + i)))


def one_class(root: str) -> str:
  _images(os.path.join(root, 'cats'), 5)
  return r"at least two classes .*found \['cats'\]"


def empty_class_folder(root: str) -> str:
  _images(os.path.join(root, 'cats'), 5)
  _images(os.path.join(root, 'dogs'), 5)
  os.makedirs(os.path.join(root, 'birds'))
  return r"Class folders \['birds'\] have no usable images"


def class_of_bad_files(root: str) -> str:
  _images(os.path.join(root, 'cats'), 5)
  _images(os.path.join(root, 'dogs'), 5)
  os.makedirs(os.path.join(root, 'birds'))
  with open(os.path.join(root, 'birds', 'empty.jpg'), 'wb'):
    pass
  return r"Class folders \['birds'\] have no usable images \(1 skipped"


def class_missing_from_validation(root: str) -> str:
  for split in ('train', 'validation'):
    _images(os.path.join(root, split, 'cats'), 3)
    _images(os.path.join(root, split, 'dogs'), 3)
  _images(os.path.join(root, 'train', 'birds'), 3)
  return r"No usable images for class 'birds' in validation/: every class needs images in both"


def misspelt_class_in_validation(root: str) -> str:
  for split in ('train', 'validation'):
    _images(os.path.join(root, split, 'cats'), 3)
  _images(os.path.join(root, 'train', 'dogs'), 3)
  _images(os.path.join(root, 'validation', 'Dogs'), 3)
  return r"No usable images for class 'Dogs' in train/, 'dogs' in validation/: .*spelling"


def images_in_root(root: str) -> str:
  _images(root, 6)
  return r'found none\. 6 files lie directly in the data folder'


def train_without_validation(root: str) -> str:
  _images(os.path.join(root, 'train', 'cats'), 3)
  _images(os.path.join(root, 'train', 'dogs'), 3)
  return r"found \['train'\].*needs both train/ and validation/"


def empty_eval_split(root: str) -> str:
  """Two classes of one distinct image each (saved twice): identical bytes share a split,
  and a class needs two distinct images to send one to eval."""
  for seed, name in enumerate(('cats', 'dogs')):
    os.makedirs(os.path.join(root, name))
    for file_name in ('a.png', 'copy of a.png'):
      with open(os.path.join(root, name, file_name), 'wb') as f:
        f.write(encode(random_pixels((12, 12, 3), seed)))
  return r'The eval split is empty: add images or raise data\.eval_percent'


FOLDER_FAILURES = (one_class, empty_class_folder, class_of_bad_files,
                   class_missing_from_validation, misspelt_class_in_validation, images_in_root,
                   train_without_validation, empty_eval_split)
