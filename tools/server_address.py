"""The `--server` address of `predict` (standard library only: checked before TensorFlow
is imported)."""

import urllib.parse

from pipeline.configs import ConfigError

SCHEMES = ('http', 'https', 'grpc')


def parse_server(url: str) -> urllib.parse.SplitResult:
  """http(s)://HOST[:PORT] (REST) or grpc://HOST:PORT; ConfigError (one line, exit 2) otherwise."""
  parsed = urllib.parse.urlsplit(url)
  if parsed.scheme not in SCHEMES or not parsed.hostname:
    raise ConfigError(f'--server: expected http://HOST:PORT or grpc://HOST:PORT, got {url!r}.')
  try:
    parsed.port  # pylint: disable=pointless-statement  (raises on a bad port)
  except ValueError as e:
    raise ConfigError(f'--server: {e} in {url!r}.') from e
  if parsed.scheme == 'grpc' and not parsed.port:
    raise ConfigError(f'--server: a gRPC address needs its port, e.g. grpc://{parsed.hostname}:8500.')
  if parsed.path.strip('/') or parsed.query:
    raise ConfigError(f'--server: give the server only ({parsed.scheme}://{parsed.netloc}); the '
                      'model is --model-name and --model-version.')
  return parsed
