"""Turns the stages' raw results into plainly named figures and a markdown table."""

import statistics
from typing import Any, Dict, List, Optional

from bench import ingest, photos, scale

Figures = Dict[str, Any]
TARGET_EPOCHS = 20


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
  return a / b if a is not None and b else None


def _cached_epoch_figures(cached: Dict[str, Any], baseline_seconds: float) -> Figures:
  """Where the cached Trainer's fit goes: epoch 1 also computes every image's features;
  later epochs train the head alone. `speedup_ceiling_head_only` is what any feature
  cache could reach with this head if features and export cost nothing."""
  epochs = cached.get('epoch_seconds') or []
  if len(epochs) < 2:
    return {}
  later = statistics.median(epochs[1:])
  # The feature pass runs just before `fit` (trainer.task.write_feature_cache): counted in epoch 1.
  first = epochs[0] + cached.get('feature_pass_seconds', 0.0)
  return {'cached_first_epoch_seconds': first, 'cached_later_epoch_seconds': later,
          'speedup_ceiling_head_only': _ratio(baseline_seconds, later * len(epochs))}


def _training(raw: Dict[str, Any]) -> Figures:
  base, cached, uncached = raw['baseline'], raw['trainer_cached'], raw['trainer_uncached']
  return {
      **_cached_epoch_figures(cached, base['seconds']),
      'baseline_seconds': base['seconds'], 'baseline_fit_seconds': base['fit_seconds'],
      'cached_seconds': cached['seconds'], 'cached_fit_seconds': cached['fit_seconds'],
      'uncached_seconds': uncached['seconds'], 'uncached_fit_seconds': uncached['fit_seconds'],
      'trainer_export_seconds': cached.get('export_seconds'),
      'speedup_cached_vs_baseline': _ratio(base['seconds'], cached['seconds']),
      'speedup_uncached_vs_baseline': _ratio(base['seconds'], uncached['seconds']),
      'speedup_cached_vs_baseline_fit_only': _ratio(base['fit_seconds'], cached['fit_seconds']),
      'val_accuracy': {'baseline': base['val_accuracy'], 'cached': cached['val_accuracy'],
                       'uncached': uncached['val_accuracy']},
  }


# Batch inference over the validation images runs in the same pipeline; the training
# pipeline's figures leave these components out.
# (MLMD execution type names: the BulkInferrer runs as components.inference.bulk_inferrer's class.)
BULK_INFERRER = 'BoundedBulkInferrer'
INFERENCE_COMPONENTS = ('UnlabeledImageExampleGen', BULK_INFERRER, 'InferenceTable')


def _feature_pass(raw: Dict[str, Any]) -> Figures:
  """Backbone alone, float32 vs bfloat16; accuracy of the cached Trainer with each."""
  fp = raw.get('feature_pass')
  if not fp:
    return {}
  return {
      'feature_pass_images_per_second': {'float32': fp['float32_images_per_second'],
                                         'bfloat16': fp['bfloat16_images_per_second']},
      'speedup_bfloat16_feature_pass': _ratio(fp['bfloat16_images_per_second'],
                                              fp['float32_images_per_second']),
      'bfloat16_max_error_over_max_feature': fp['max_error_over_max_feature'],
      'bfloat16_mean_error_over_mean_feature': fp['mean_error_over_mean_feature'],
      'cached_val_accuracy_by_precision': {
          raw['trainer_cached'].get('feature_precision', 'float32'):
              raw['trainer_cached']['val_accuracy'],
          'bfloat16': raw['trainer_cached_bfloat16']['val_accuracy']},
  }


def _sweep(views: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
  return {k: {'seconds': r['seconds'], 'val_accuracy': r['val_accuracy'],
              'val_accuracy_mean_last_half': r.get('val_accuracy_mean_last_half')}
          for k, r in views.items()}


def _accuracy_text(run: Dict[str, Any]) -> str:
  """Last epoch's val accuracy (and the mean over the last half of the epochs)."""
  mean = run.get('val_accuracy_mean_last_half')
  return f'{run["val_accuracy"]:.3f}' + (f' (mean {mean:.3f})' if mean is not None else '')


def _augmented(raw: Dict[str, Any], settings: Dict[str, Any]) -> Figures:
  """Augmentation on: baseline script, view-cache Trainer (default K), uncached Trainer,
  whole pipeline; the K sweeps; the ceiling of the view cache."""
  aug, views = raw.get('augmented'), raw.get('views')
  if not aug or not views:
    return {}
  k = str(settings['default_views']) if str(settings['default_views']) in views else max(views)
  cached, uncached, base = views[k], aug['trainer_uncached'], aug['baseline']
  figures = {
      'augmented_default_views': int(k),
      'augmented_baseline_seconds': base['seconds'],
      'augmented_views_seconds': cached['seconds'],
      'augmented_uncached_seconds': uncached['seconds'],
      'speedup_views_vs_augmented_baseline': _ratio(base['seconds'], cached['seconds']),
      'speedup_augmented_uncached_vs_augmented_baseline': _ratio(base['seconds'],
                                                                 uncached['seconds']),
      'augmented_val_accuracy': {'baseline': base['val_accuracy'],
                                 'views': cached['val_accuracy'],
                                 'uncached': uncached['val_accuracy']},
      'augmented_val_accuracy_mean_last_half': {
          'views': cached.get('val_accuracy_mean_last_half'),
          'uncached': uncached.get('val_accuracy_mean_last_half')},
      'val_accuracy_views_minus_uncached': cached['val_accuracy'] - uncached['val_accuracy'],
      'augmented_pipeline_seconds': aug['pipeline']['seconds'],
      'speedup_augmented_pipeline_vs_augmented_baseline': _ratio(
          base['seconds'], aug['pipeline']['seconds']),
      'views_sweep': _sweep(views),
  }
  if 'hard' in raw:
    figures['views_sweep_hard'] = _sweep(raw['hard']['views'])
    figures['hard_digits'] = raw['hard']['digits']
  return figures


def _ceilings(f: Figures, raw: Dict[str, Any], settings: Dict[str, Any]) -> Figures:
  """What the parts alone cost: a head epoch, the feature pass over K views + eval."""
  rates = f.get('feature_pass_images_per_second')
  if not rates or 'augmented_default_views' not in f or not f.get('cached_later_epoch_seconds'):
    return {}
  train = settings['train_images']
  evaluation = max(raw['transform']['examples'] - train, 0)
  precision = raw['views'][str(f['augmented_default_views'])].get('feature_precision',
                                                                   'float32')
  feature_pass = (f['augmented_default_views'] * train / rates[precision]
                  + evaluation / rates['float32'])
  head = settings['epochs'] * f['cached_later_epoch_seconds']
  return {'views_feature_pass_alone_seconds': feature_pass, 'head_epochs_alone_seconds': head,
          'speedup_ceiling_views': _ratio(f['augmented_baseline_seconds'], feature_pass + head)}


def _pipeline(raw: Dict[str, Any]) -> Figures:
  components = raw['pipeline']['components']
  inference = sum(c['seconds'] for name, c in components.items()
                  if name in INFERENCE_COMPONENTS)
  total = raw['pipeline']['seconds'] - inference
  trainer = components.get('Trainer', {}).get('seconds')
  split = {name: {'seconds': c['seconds'], 'share_of_pipeline': c['seconds'] / total,
                  'peak_rss_mb': c['peak_rss_mb']} for name, c in components.items()
           if name not in INFERENCE_COMPONENTS}
  return {
      'pipeline_seconds': total, 'pipeline_trainer_seconds': trainer,
      'pipeline_over_trainer': _ratio(total, trainer),
      'pipeline_over_baseline': _ratio(total, raw['baseline']['seconds']),
      'speedup_pipeline_vs_baseline': _ratio(raw['baseline']['seconds'], total),
      'pipeline_components': split,
      'pipeline_between_components_seconds': total - sum(c['seconds'] for c in split.values()),
  }


def _insight(raw: Dict[str, Any]) -> Figures:
  """The data insight step (DataInsightGen) next to the Trainer, both in the pipeline run."""
  components = raw['pipeline']['components']
  insight = components.get('DataInsightGen', {}).get('seconds')
  trainer = components.get('Trainer', {}).get('seconds')
  if insight is None:
    return {}
  return {'insight_seconds': insight, 'insight_over_trainer': _ratio(insight, trainer)}


def _serving(raw: Dict[str, Any]) -> Figures:
  serving, figures = raw['serving'], {}
  for batch in (1, 32):
    image_bytes, bare = serving[f'image_bytes_batch{batch}'], serving[f'bare_batch{batch}']
    figures[f'serving_bytes_images_per_second_batch{batch}'] = image_bytes['images_per_second']
    figures[f'bare_images_per_second_batch{batch}'] = bare['images_per_second']
    figures[f'serving_bytes_median_ms_batch{batch}'] = image_bytes['median_ms']
    figures[f'bare_median_ms_batch{batch}'] = bare['median_ms']
    # Time per image, image-bytes signature over bare model.
    figures[f'serving_bytes_over_bare_batch{batch}'] = _ratio(
        bare['images_per_second'], image_bytes['images_per_second'])
  return figures


def _inference(raw: Dict[str, Any]) -> Figures:
  """predict vs the bare model; the BulkInferrer's images/s (from its MLMD time)."""
  figures: Figures = {}
  if 'predict' in raw:
    predict = raw['predict']
    figures.update(
        predict_images=predict['images'],
        predict_images_per_second_batch32=predict['predict_images_per_second'],
        bare_decoded_images_per_second_batch32=predict['bare_images_per_second'],
        predict_over_bare_batch32=_ratio(predict['bare_images_per_second'],
                                         predict['predict_images_per_second']))
  bulk = raw['pipeline']['components'].get(BULK_INFERRER)
  if bulk and 'predict' in raw:
    figures['bulk_inferrer_seconds'] = bulk['seconds']
    figures['bulk_inferrer_images_per_second'] = raw['predict']['images'] / bulk['seconds']
  return figures


def _tuning(raw: Dict[str, Any]) -> Figures:
  """N Tuner trials on cached features vs one uncached training (Trainer, lesson script)."""
  if 'tuner' not in raw:
    return {}
  tuner = raw['tuner']
  return {'tuning_trials': tuner['trials'], 'tuning_seconds': tuner['seconds'],
          'tuning_best_val_accuracy': tuner['best_val_accuracy'],
          'tuning_over_uncached_trainer': _ratio(tuner['seconds'],
                                                 raw['trainer_uncached']['seconds']),
          'tuning_over_baseline': _ratio(tuner['seconds'], raw['baseline']['seconds'])}


def _memory(raw: Dict[str, Any], settings: Dict[str, Any]) -> Figures:
  stages = ('baseline', 'pipeline', 'transform', 'trainer_cached', 'trainer_uncached', 'serving')
  rss = {name: raw[name]['peak_rss_mb'] for name in stages}
  transform = raw['transform']
  pixels = settings['image_size'] ** 2 * 3
  figures = {
      'peak_rss_mb': rss,
      'peak_rss_over_baseline': {k: _ratio(v, rss['baseline']) for k, v in rss.items()},
      'transformed_examples': transform['examples'],
      'bytes_per_transformed_example': transform['bytes_per_transformed_example'],
      'raw_pixel_bytes_per_image': pixels,
      'bytes_per_transformed_example_over_raw_pixels': _ratio(
          transform['bytes_per_transformed_example'], pixels),
  }
  if 'small' in raw:
    key = f'rss_growth_{settings["train_images"]}_vs_{settings["stream_images"]}'
    figures[key] = {name: _ratio(raw[name]['peak_rss_mb'], small['peak_rss_mb'])
                    for name, small in raw['small'].items()}
    figures['rss_growth'] = key
  return figures


def _targets(f: Figures, settings: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
  speedup = f['speedup_cached_vs_baseline']
  targets = {
      'speedup_cached_vs_baseline': ('>= 8x at 20 epochs', speedup >= 8
                                     if settings['epochs'] == TARGET_EPOCHS else None),
      'pipeline_over_trainer': ('<= 1.25', f['pipeline_over_trainer'] <= 1.25),
      'serving_bytes_over_bare_batch32': ('<= 1.3', f['serving_bytes_over_bare_batch32'] <= 1.3),
  }
  if f.get('predict_over_bare_batch32'):
    targets['predict_over_bare_batch32'] = ('<= 1.3', f['predict_over_bare_batch32'] <= 1.3)
  if f.get('insight_over_trainer') is not None:
    targets['insight_over_trainer'] = ('<= 0.15', f['insight_over_trainer'] <= 0.15)
  optional = {
      'speedup_pipeline_vs_baseline': ('>= 5x', lambda v: v >= 5),
      'speedup_views_vs_augmented_baseline': ('>= 3x', lambda v: v >= 3),
      'speedup_augmented_pipeline_vs_augmented_baseline': ('>= 3x', lambda v: v >= 3),
      'val_accuracy_views_minus_uncached': ('at most 1 point below', lambda v: v >= -0.01),
      'speedup_bfloat16_feature_pass': ('>= 1.4x', lambda v: v >= 1.4),
  }
  for key, (text, check) in optional.items():
    if f.get(key) is not None:
      targets[key] = (text, check(f[key]))
  for stage, growth in f.get(f.get('rss_growth', ''), {}).items():
    targets[f'rss_growth.{stage}'] = ('<= 1.2', growth <= 1.2)
  return {k: {'target': t, 'met': met} for k, (t, met) in targets.items()}


def figures(raw: Dict[str, Any], settings: Dict[str, Any]) -> Figures:
  """All figures, named plainly, with the targets and whether each was met."""
  settings.setdefault('default_views', 4)
  if 'baseline' not in raw:  # --only-scale
    result = scale.figures(raw['scale'])
    result['targets'] = scale.targets(result)
    return result
  result = {**_training(raw), **_pipeline(raw), **_insight(raw), **_serving(raw),
            **_inference(raw),
            **_tuning(raw), **_memory(raw, settings), **_feature_pass(raw),
            **_augmented(raw, settings)}
  result.update(_ceilings(result, raw, settings))
  if 'scale' in raw:
    result.update(scale.figures(raw['scale']))
  if 'ingest' in raw:
    result.update(ingest.figures(raw['ingest']))
  if 'photos' in raw:
    result.update(photos.figures(raw['photos']))
  result['targets'] = {**_targets(result, settings), **scale.targets(result)}
  return result


def _met(f: Figures, key: str) -> str:
  target = f['targets'].get(key)
  if not target:
    return ''
  verdict = {True: 'met', False: 'NOT met', None: 'n/a here'}[target['met']]
  return f'{target["target"]}: {verdict}'


def _speed(speedup: float) -> str:
  return f'{speedup:.2f}x faster' if speedup >= 1 else f'{1 / speedup:.2f}x slower'


def _row(cells: List[Any]) -> str:
  return '| ' + ' | '.join(str(c) for c in cells) + ' |'


def _training_rows(f: Figures) -> List[List[str]]:
  rows = [
      ['**training**', '', '', ''],
      ['baseline: image_dataset_from_directory + model.fit',
       f'{f["baseline_seconds"]:.1f} s (fit {f["baseline_fit_seconds"]:.1f} s)',
       '1.00 (baseline)', ''],
      ['Trainer run_fn, feature cache',
       f'{f["cached_seconds"]:.1f} s (fit {f["cached_fit_seconds"]:.1f} s)',
       _speed(f['speedup_cached_vs_baseline']), _met(f, 'speedup_cached_vs_baseline')],
      ['Trainer run_fn, no cache',
       f'{f["uncached_seconds"]:.1f} s (fit {f["uncached_fit_seconds"]:.1f} s)',
       _speed(f['speedup_uncached_vs_baseline']), ''],
  ]
  if f.get('cached_first_epoch_seconds'):
    rows.append(['- of which epoch 1 (backbone features of every image, then head) / '
                 'each later epoch (head only)',
                 f'{f["cached_first_epoch_seconds"]:.1f} s / '
                 f'{f["cached_later_epoch_seconds"]:.1f} s',
                 f'ceiling {_speed(f["speedup_ceiling_head_only"])} (head epochs alone)', ''])
  if f.get('trainer_export_seconds'):
    rows.append(['- of which SavedModel export (cached run)',
                 f'{f["trainer_export_seconds"]:.1f} s', '', ''])
  rows.append(['val accuracy baseline / cached / uncached',
               ' / '.join(f'{v:.3f}' for v in f['val_accuracy'].values()), '', ''])
  return rows


def _pipeline_rows(f: Figures) -> List[List[str]]:
  rows = [['**whole pipeline**', '', '', ''],
          ['local_runner.run, all components', f'{f["pipeline_seconds"]:.1f} s',
           f'{_speed(f["speedup_pipeline_vs_baseline"])} than baseline; '
           f'{f["pipeline_over_trainer"]:.2f}x its Trainer',
           f'{_met(f, "speedup_pipeline_vs_baseline")}; {_met(f, "pipeline_over_trainer")}']]
  for name, c in f['pipeline_components'].items():
    peak = f', RSS high-water {c["peak_rss_mb"]:.0f} MB' if c['peak_rss_mb'] else ''
    rows.append([f'- {name}', f'{c["seconds"]:.1f} s{peak}',
                 f'{100 * c["share_of_pipeline"]:.0f}% of pipeline', ''])
  rows.append(['- between components (orchestration)',
               f'{f["pipeline_between_components_seconds"]:.1f} s', '', ''])
  if f.get('insight_seconds') is not None:
    rows.append(['data insight step (DataInsightGen) vs the Trainer (feature cache)',
                 f'{f["insight_seconds"]:.1f} s',
                 f'{f["insight_over_trainer"]:.2f}x the Trainer', _met(f, 'insight_over_trainer')])
  return rows


def _serving_rows(f: Figures) -> List[List[str]]:
  rows = [['**serving**: image-bytes signature vs bare Keras model', '', '', '']]
  for b in (1, 32):
    rows.append([f'batch {b}',
                 f'{f[f"serving_bytes_images_per_second_batch{b}"]:.1f} vs '
                 f'{f[f"bare_images_per_second_batch{b}"]:.1f} images/s; median '
                 f'{f[f"serving_bytes_median_ms_batch{b}"]:.1f} vs '
                 f'{f[f"bare_median_ms_batch{b}"]:.1f} ms',
                 f'{f[f"serving_bytes_over_bare_batch{b}"]:.2f}x bare per image',
                 _met(f, f'serving_bytes_over_bare_batch{b}')])
  return rows


def _inference_rows(f: Figures) -> List[List[str]]:
  rows = []
  if f.get('predict_over_bare_batch32'):
    rows += [['**batch inference**', '', '', ''],
             [f'`predict`, batch 32, {f["predict_images"]} files (read, checked, CSV rows) '
              'vs bare model on decoded tensors',
              f'{f["predict_images_per_second_batch32"]:.1f} vs '
              f'{f["bare_decoded_images_per_second_batch32"]:.1f} images/s',
              f'{f["predict_over_bare_batch32"]:.2f}x bare per image',
              _met(f, 'predict_over_bare_batch32')]]
  if f.get('bulk_inferrer_images_per_second'):
    rows.append(['BulkInferrer in the pipeline (same images)',
                 f'{f["bulk_inferrer_images_per_second"]:.1f} images/s '
                 f'({f["bulk_inferrer_seconds"]:.1f} s)', '', ''])
  if f.get('tuning_seconds'):
    rows += [['**hyperparameter search** (Tuner on cached features)', '', '', ''],
             [f'{f["tuning_trials"]} trials, best val accuracy '
              f'{f["tuning_best_val_accuracy"]:.3f}', f'{f["tuning_seconds"]:.1f} s',
              f'{f["tuning_over_uncached_trainer"]:.2f}x one uncached Trainer; '
              f'{f["tuning_over_baseline"]:.2f}x the baseline script', '']]
  return rows


def _memory_rows(f: Figures) -> List[List[str]]:
  rows = [['**memory**: peak RSS, each stage in its own process', '', '', '']]
  for name, value in f['peak_rss_mb'].items():
    rows.append([name, f'{value:.0f} MB', f'{f["peak_rss_over_baseline"][name]:.2f}x baseline',
                 ''])
  rows.append(['bytes per transformed example (gzip TFRecord)',
               f'{f["bytes_per_transformed_example"]:.0f} B',
               f'{f["bytes_per_transformed_example_over_raw_pixels"]:.2f}x raw uint8 pixels', ''])
  key = f.get('rss_growth')
  for name, growth in (f.get(key) or {}).items():
    sizes = key[len('rss_growth_'):].replace('_vs_', ' vs ')
    rows.append([f'peak RSS growth, {name}, {sizes} train images', '', f'{growth:.2f}x',
                 _met(f, f'rss_growth.{name}')])
  return rows


def _augmented_rows(f: Figures) -> List[List[str]]:
  if 'augmented_views_seconds' not in f:
    return []
  acc = f['augmented_val_accuracy']
  rows = [
      ["**augmentation on (the lesson's default)**", '', '', ''],
      ['baseline script with augmentation', f'{f["augmented_baseline_seconds"]:.1f} s',
       '1.00 (baseline)', ''],
      [f'Trainer, view cache (K = {f["augmented_default_views"]})',
       f'{f["augmented_views_seconds"]:.1f} s', _speed(f['speedup_views_vs_augmented_baseline']),
       _met(f, 'speedup_views_vs_augmented_baseline')],
      ['Trainer, no cache (the full model every epoch)',
       f'{f["augmented_uncached_seconds"]:.1f} s',
       _speed(f['speedup_augmented_uncached_vs_augmented_baseline']), ''],
      ['val accuracy baseline / view cache / no cache (last epoch; mean over the last half)',
       f'{acc["baseline"]:.3f} / {acc["views"]:.3f} / {acc["uncached"]:.3f}'
       + _mean_text(f.get('augmented_val_accuracy_mean_last_half', {})),
       f'{100 * f["val_accuracy_views_minus_uncached"]:+.1f} points',
       _met(f, 'val_accuracy_views_minus_uncached')],
      ['whole pipeline with augmentation', f'{f["augmented_pipeline_seconds"]:.1f} s',
       _speed(f['speedup_augmented_pipeline_vs_augmented_baseline']),
       _met(f, 'speedup_augmented_pipeline_vs_augmented_baseline')],
  ]
  if f.get('speedup_ceiling_views'):
    rows.append(['- ceiling: feature pass alone (K views + eval) / head epochs alone',
                 f'{f["views_feature_pass_alone_seconds"]:.1f} s / '
                 f'{f["head_epochs_alone_seconds"]:.1f} s',
                 f'ceiling {_speed(f["speedup_ceiling_views"])}', ''])
  for key, task in (('views_sweep', 'bench data'), ('views_sweep_hard', 'harder task')):
    if key in f:
      name = task if key == 'views_sweep' else f'{task}: digits {f["hard_digits"]}'
      cells = '; '.join(f'K={k}: {_accuracy_text(v)}, {v["seconds"]:.0f} s'
                        for k, v in f[key].items())
      rows.append([f'val accuracy by K, {name}', cells, '', ''])
  return rows


def _mean_text(means: Dict[str, Optional[float]]) -> str:
  if not means or None in means.values():
    return ''
  return '; mean ' + ' / '.join(f'{v:.3f}' for v in means.values())


def _precision_rows(f: Figures) -> List[List[str]]:
  if 'feature_pass_images_per_second' not in f:
    return []
  rates, acc = f['feature_pass_images_per_second'], f['cached_val_accuracy_by_precision']
  return [
      ['**bf16 feature pass** (backbone alone)', '', '', ''],
      ['images/s float32 / bfloat16', f'{rates["float32"]:.1f} / {rates["bfloat16"]:.1f}',
       _speed(f['speedup_bfloat16_feature_pass']), _met(f, 'speedup_bfloat16_feature_pass')],
      ['bfloat16 error: max / max |feature|, mean / mean |feature|',
       f'{f["bfloat16_max_error_over_max_feature"]:.4f} / '
       f'{f["bfloat16_mean_error_over_mean_feature"]:.4f}', '', ''],
      ['cached Trainer val accuracy by feature precision',
       ', '.join(f'{k}: {v:.3f}' for k, v in acc.items()), '', ''],
  ]


def table(f: Figures) -> str:
  """The markdown table: figure, value, ratio to its reference in this run, target."""
  if 'speedup_cached_vs_baseline' not in f:  # --only-scale
    rows = scale.rows(f)
    return '\n'.join(_row(r) for r in [['figure', 'value', 'ratio', 'target'], ['---'] * 4] + rows)
  rows = (_training_rows(f) + _augmented_rows(f) + _precision_rows(f) + _pipeline_rows(f)
          + _serving_rows(f) + _inference_rows(f) + _memory_rows(f))
  if 'ingest_images_per_second' in f:
    rows += ingest.rows(f)
  if 'photos_seconds_per_image' in f:
    rows += photos.rows(f)
  if 'scale' in f:
    rows += scale.rows(f)
  return '\n'.join(_row(r) for r in [['figure', 'value', 'ratio', 'target'], ['---'] * 4] + rows)


def main(argv: Optional[List[str]] = None) -> None:
  """Re-prints the table of an earlier run: python -m bench.report bench/results/X.json."""
  import json
  import sys
  with open((argv or sys.argv)[1]) as f:
    saved = json.load(f)
  print(table(figures(saved['stages'], saved['settings'])))


if __name__ == '__main__':
  main()
