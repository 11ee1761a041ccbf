import pytest

from pipeline.configs import ConfigError, PipelineConfig, config_from_dict, load_config


def test_defaults_are_the_lesson():
  config = PipelineConfig()
  assert config.model.cut_layer == 'mixed7'
  assert config.model.image_size == 150
  assert (config.model.dense_units, config.model.dropout) == (1024, 0.2)
  assert config.training.learning_rate == 1e-4
  assert config.training.augment is True


def test_yaml_and_overrides(tmp_path):
  path = tmp_path / 'c.yaml'
  path.write_text('model:\n  image_size: 96\ntraining:\n  epochs: 3\n  learning_rate: 1\n')
  config = load_config(str(path), {'data.path': '/x', 'training.epochs': 5, 'model.weights': None})
  assert config.model.image_size == 96
  assert config.training.epochs == 5
  assert config.training.learning_rate == 1.0 and isinstance(config.training.learning_rate, float)
  assert config.data.path == '/x'
  assert config.model.weights == 'imagenet'  # the lesson's default


@pytest.mark.parametrize('values, message', [
    ({'modell': {}}, 'Unknown config key modell; allowed keys: beam_pipeline_args'),
    ({'model': {'cut': 'mixed7'}}, 'Unknown config key model.cut; allowed keys in model: cut_layer'),
    ({'training': {'epochs': 'ten'}}, 'training.epochs must be an integer'),
    ({'training': {'augment': 'yes'}}, 'training.augment must be true or false'),
    ({'model': 5}, 'model must be a mapping'),
    ({'beam_pipeline_args': '--runner=X'}, 'beam_pipeline_args must be a list'),
])
def test_bad_config_names_the_field(values, message):
  with pytest.raises(ConfigError, match=message):
    config_from_dict(values)


@pytest.mark.parametrize('overrides, field', [
    ({'model.image_size': 74}, 'model.image_size'),
    ({'model.weights': 'imagenet21k'}, 'model.weights'),
    ({'data.eval_percent': 0}, 'data.eval_percent'),
    ({'training.epochs': 0}, 'training.epochs'),
    ({'model.dropout': 1.0}, 'model.dropout'),
    ({'evaluation.report_misclassified': -1}, 'evaluation.report_misclassified'),
    ({'model.pooling': 'max'}, 'model.pooling'),
    ({'training.learning_rate_decay': 'step'}, 'training.learning_rate_decay'),
    ({'export.tflite_quantization': 'int4'}, 'export.tflite_quantization'),
    ({'evaluation.min_class_accuracy': -0.1}, 'evaluation.min_class_accuracy'),
])
def test_out_of_range_values_fail_validation(overrides, field):
  config = load_config(overrides={'data.path': '/data', **overrides})
  with pytest.raises(ConfigError, match=field):
    config.validate()


def test_missing_data_path_fails():
  with pytest.raises(ConfigError, match='data.path'):
    PipelineConfig().validate()


def test_unreadable_config_file(tmp_path):
  with pytest.raises(ConfigError, match='Cannot read config file'):
    load_config(str(tmp_path / 'missing.yaml'))
  bad = tmp_path / 'bad.yaml'
  bad.write_text('model: [unclosed')
  with pytest.raises(ConfigError, match='not valid YAML'):
    load_config(str(bad))


@pytest.mark.parametrize('overrides, message', [
    ({'evaluation.min_accuracy': 60},
     r'evaluation.min_accuracy: expected a number between 0 and 1, got 60 \(60 looks like a '
     r'percentage: write 0.6\)'),
    ({'evaluation.max_accuracy_drop': 5}, r'evaluation.max_accuracy_drop: .* write 0.05\)'),
    ({'evaluation.min_accuracy': -1}, r'evaluation.min_accuracy: .* got -1\.$'),
    ({'evaluation.min_class_accuracy': -0.5}, r'evaluation.min_class_accuracy: .* got -0.5\.$'),
    ({'evaluation.max_class_accuracy_drop': 10}, 'evaluation.max_class_accuracy_drop'),
    ({'data.max_skipped_fraction': 50}, r'data.max_skipped_fraction: .* write 0.5\)'),
    ({'data.max_skipped_fraction': 250}, r'data.max_skipped_fraction: .* got 250\.$'),
])
def test_fractions_outside_zero_to_one_are_refused_in_one_line(overrides, message):
  config = load_config(overrides={'data.path': '/data', **overrides})
  with pytest.raises(ConfigError, match=message) as error:
    config.validate()
  assert '\n' not in str(error.value)


@pytest.mark.parametrize('overrides', [
    {'evaluation.min_accuracy': 0}, {'evaluation.min_accuracy': 1},
    {'evaluation.max_accuracy_drop': 1}, {'evaluation.min_class_accuracy': None},
    {'data.max_skipped_fraction': 0.0},
])
def test_fraction_bounds_are_inclusive(overrides):
  load_config(overrides={'data.path': '/data', **overrides}).validate()
