"""The scale stage's figures: per component time per image and RSS ratios between the
1x and Nx runs, against their targets, and the extrapolation (no pipeline is run)."""

import pytest

from bench import memory, report, run, scale


def _run(train, seconds, rss, disk):
  """rss: component -> (RSS when its window began, high-water in it)."""
  return {'train_images': train, 'eval_images': train // 2, 'seconds': sum(seconds.values()),
          'peak_rss_mb': max(peak for _, peak in rss.values()), 'artifact_bytes': disk,
          'components': {name: {'seconds': s, 'start_rss_mb': rss[name][0],
                                'peak_rss_mb': rss[name][1]}
                         for name, s in seconds.items()}}


RAW = {'factor': 4, 'runs': {
    '1': _run(100, {'Transform': 30.0, 'Trainer': 60.0}, {'Transform': (900, 1000), 'Trainer': (1000, 2000)},
              {'Transform.transformed_examples': 10**6}),
    '4': _run(400, {'Transform': 90.0, 'Trainer': 300.0}, {'Transform': (900, 1100), 'Trainer': (1100, 2600)},
              {'Transform.transformed_examples': 4 * 10**6})}}


def test_ratios_are_per_image_between_the_two_sizes_and_checked_against_targets():
  f = scale.figures(RAW)
  transform, trainer = f['scale']['Transform'], f['scale']['Trainer']
  assert transform['time_per_image_ratio'] == pytest.approx((90 / 600) / (30 / 150))
  assert trainer['time_per_image_ratio'] == pytest.approx((300 / 600) / (60 / 150))
  assert trainer['peak_rss_ratio'] == pytest.approx(1.3)
  assert transform['marginal_seconds_per_image'] == pytest.approx(60 / 450)
  # What the Trainer itself added, apart from what it inherited: 1,000 then 1,500 MB.
  assert (trainer['rss_rise_mb_1x'], trainer['rss_rise_mb_4x']) == (1000, 1500)
  assert f['scale_disk']['Transform.transformed_examples']['ratio'] == pytest.approx(4)
  targets = scale.targets(f)
  assert targets['scale.Transform.time_per_image_ratio']['met']
  assert not targets['scale.Trainer.time_per_image_ratio']['met']  # 1.25 > 1.15
  assert targets['scale.Transform.peak_rss_ratio']['met']
  assert not targets['scale.Trainer.peak_rss_ratio']['met']  # 1.3 > 1.2


def test_extrapolation_scales_the_larger_run_per_image():
  f = scale.figures(RAW)
  images = scale.EXTRAPOLATE_TO * 3 // 2
  assert f['scale_extrapolated_seconds']['Transform'] == pytest.approx(90 / 600 * images)
  assert f['scale_extrapolated_seconds']['total'] == pytest.approx((90 + 300) / 600 * images)


def test_an_only_scale_run_reports_the_scale_table_alone():
  f = report.figures({'scale': RAW}, {'epochs': 2, 'image_size': 75})
  table = report.table(f)
  assert '- Trainer, ms per image | 400.0 / 500.0 | 1.25 | <= 1.15: NOT met' in table
  assert 'disk: Transform.transformed_examples | 1.0 MB / 4.0 MB | 4.00' in table
  assert '- Trainer, RSS high-water MB | 2000 / 2600 (own rise 1000 / 1500) | 1.30' in table


def test_rss_at_a_moment_is_the_last_sample_before_it():
  samples = [(10.0, 500.0), (11.0, 800.0), (12.0, 600.0)]
  assert memory.rss_at(samples, 11.5) == 800.0
  assert memory.rss_at(samples, 12.0) == 600.0
  assert memory.rss_at(samples, 9.0) == 0.0


def test_the_rss_high_water_of_a_window_counts_only_samples_inside_it():
  samples = [(10.0, 500.0), (11.0, 900.0), (12.0, 600.0), (13.0, 700.0)]
  assert memory.peak_between(samples, 11.5, 13.0) == 700.0
  assert memory.peak_between(samples, 13.5, 14.0) == 0.0


def test_a_component_without_time_at_1x_gets_a_row_without_ratio():
  raw = {'factor': 4, 'runs': {
      '1': _run(100, {'Pusher': 0.0}, {'Pusher': (900, 950)}, {}),
      '4': _run(400, {'Pusher': 0.2}, {'Pusher': (900, 960)}, {})}}
  f = scale.figures(raw)
  assert f['scale']['Pusher']['time_per_image_ratio'] is None
  assert ['- Pusher, ms per image', '0.0 / 0.3', '', ''] in scale.rows(f)


@pytest.mark.parametrize('argv, message', [
    (['--scale', '1'], 'N >= 2'),
    (['--only-scale'], '--only-scale needs it'),
    (['--scale', '2', '--data', 'photos/'], 'writes its own data'),
])
def test_scale_arguments_that_cannot_work_are_refused_before_anything_runs(
    argv, message, monkeypatch):
  monkeypatch.setattr(run, 'run', lambda args: pytest.fail('the bench started'))
  with pytest.raises(SystemExit, match=message):
    run.main(argv)
