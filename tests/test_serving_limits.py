"""Bounded serving: requests over a limit are refused before decoding, in every signature.

The bombs are sent in a process of their own (`tests/serving_limits_probe.py`) whose
peak RSS growth must stay under RSS_BOUND_MIB; decoding the GIF bomb alone would take
about 1 GiB (16000x16000 pixels in 189 KB: giflib's raster and the RGB output).
"""

import io
import json
import os
import struct
import subprocess
import sys
import zlib

import pytest
import tensorflow as tf
from PIL import Image

from pipeline.configs import ServingConfig
from tests.conftest import encode_image, random_pixels
from tests.tiny_model import export_tiny_model
from trainer import image_limits

LIMITS = ServingConfig()
RSS_BOUND_MIB = 200


def _png_declaring(width: int, height: int) -> bytes:
  """A real 10x10 PNG whose IHDR (with a valid CRC) declares width x height."""
  png = bytearray(encode_image(random_pixels((10, 10, 3)), 'PNG'))
  png[16:24] = struct.pack('>II', width, height)
  png[29:33] = struct.pack('>I', zlib.crc32(bytes(png[12:29])))
  return bytes(png)


def _jpeg_declaring(width: int, height: int) -> bytes:
  """A real 16x16 JPEG whose SOF0 segment declares width x height."""
  jpeg = bytearray(encode_image(random_pixels((16, 16, 3)), 'JPEG'))
  sof = jpeg.index(b'\xff\xc0')
  jpeg[sof + 5:sof + 9] = struct.pack('>HH', height, width)
  return bytes(jpeg)


def _bmp_declaring(width: int, height: int) -> bytes:
  bmp = bytearray(encode_image(random_pixels((10, 10, 3)), 'BMP'))
  bmp[18:26] = struct.pack('<ii', width, -height)  # negative height: top-down rows
  return bytes(bmp)


def _gif(screen, frames) -> bytes:
  """A GIF of a logical screen and frames of the given sizes, each with a tiny LZW stream."""
  data = b'GIF89a' + struct.pack('<HHBBB', *screen, 0, 0, 0)
  for width, height in frames:
    data += b'\x2c' + struct.pack('<HHHHB', 0, 0, width, height, 0) + b'\x08\x02\x4c\x01\x00'
  return data + b'\x3b'


def _gif_bomb(side: int) -> bytes:
  """A real side x side GIF of one colour: a few hundred KB that decode to side^2 pixels."""
  out = io.BytesIO()
  Image.new('P', (side, side), 0).save(out, format='GIF')
  return out.getvalue()


def _declared(data: bytes) -> int:
  return int(image_limits.declared_pixels(tf.constant(data)).numpy())


def test_headers_declare_the_pixels_the_decoder_would_allocate():
  assert _declared(_png_declaring(23170, 23170)) == 23170 ** 2
  assert _declared(_jpeg_declaring(65500, 65500)) == 65500 ** 2
  assert _declared(_bmp_declaring(30000, 20000)) == 600_000_000
  assert _declared(_gif((100, 100), [(10, 10)])) == 10_000  # the screen
  assert _declared(_gif((10, 10), [(65535, 65535)])) == 65535 ** 2  # a frame
  assert _declared(_gif((10, 10), [(3000, 2000)] * 5)) == 30_000_000  # all frames together
  assert _declared(encode_image(random_pixels((30, 40, 3)), 'GIF')) == 1200
  assert _declared(b'not an image') == 0  # left to the decoder's own error
  many_pieces = _gif((10, 10), [(1, 1)] * (image_limits.MAX_GIF_BLOCKS // 2))
  assert _declared(many_pieces) == -1


@pytest.fixture(scope='module')
def probe_result(tmp_path_factory):
  folder = tmp_path_factory.mktemp('limits')
  model_dir = export_tiny_model(str(folder), serving=LIMITS)
  payloads = folder / 'payloads'
  payloads.mkdir()
  (payloads / 'good.png').write_bytes(encode_image(random_pixels((40, 30, 3)), 'PNG'))
  cases = {
      'gif_bomb': _gif_bomb(16000),
      'gif_frame': _gif((10, 10), [(65535, 65535)]),
      'gif_frames': _gif((10, 10), [(3000, 2000)] * 5),
      'png_ihdr': _png_declaring(23170, 23170),
      'jpeg_sof': _jpeg_declaring(65500, 65500),
      'bmp_header': _bmp_declaring(30000, 20000),
      'blob': os.urandom(30_000_000),
  }
  for case, data in cases.items():
    (payloads / f'{case}.bin').write_bytes(data)
  tiny = encode_image(random_pixels((8, 8, 3)), 'PNG')
  for i in range(1000):
    (payloads / f'batch.{i:04d}.bin').write_bytes(tiny)
  run = subprocess.run([sys.executable, '-m', 'tests.serving_limits_probe', model_dir,
                        str(payloads)], capture_output=True, text=True, timeout=600,
                       check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  return json.loads(run.stdout.strip().splitlines()[-1])


LIMIT_OF_CASE = {'gif_bomb': 'max_image_pixels', 'gif_frame': 'max_image_pixels',
                 'gif_frames': 'max_image_pixels', 'png_ihdr': 'max_image_pixels',
                 'jpeg_sof': 'max_image_pixels', 'bmp_header': 'max_image_pixels',
                 'blob': 'max_image_bytes', 'batch': 'max_batch'}


@pytest.mark.parametrize('signature', ['serving_image_bytes', 'serving_default'])
@pytest.mark.parametrize('case', sorted(LIMIT_OF_CASE))
def test_request_over_a_limit_is_refused_naming_it(probe_result, case, signature):
  message = probe_result['results'][f'{case}/{signature}']
  limit = LIMIT_OF_CASE[case]
  assert 'Refused' in message and f'serving.{limit}={getattr(LIMITS, limit)}' in message, message


def test_refusals_keep_memory_bounded_and_the_server_answering(probe_result):
  assert probe_result['good_after_each']
  assert probe_result['rss_growth_mib'] < RSS_BOUND_MIB, probe_result['rss_growth_mib']



@pytest.mark.parametrize('field', ['max_image_bytes', 'max_image_pixels', 'max_batch'])
def test_serving_limits_must_be_positive(field):
  from pipeline.configs import ConfigError, load_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match=f'serving.{field}'):
    load_config(overrides={'data.path': 'x', f'serving.{field}': 0}).validate()
