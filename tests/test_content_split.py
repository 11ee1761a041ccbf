"""The content split: identical bytes share a split, each class sends its share to eval."""

import collections

import numpy as np

from components.example_gen.content_split import Hashed, content_digest, eval_count, plan_splits


def _items(counts, seed=0):
  rng = np.random.default_rng(seed)
  return [Hashed(f'{name}/{i}.jpg', name, None, content_digest(rng.bytes(16)))
          for name, count in counts.items() for i in range(count)]


def test_each_class_sends_its_share_to_eval():
  counts = {'a': 36, 'b': 36, 'c': 32, 'd': 5, 'e': 2}
  plan = plan_splits(_items(counts), eval_percent=20)
  per_class = collections.Counter(k.split('/')[0] for k, s in plan.splits.items() if s == 'eval')
  assert dict(per_class) == {'a': 7, 'b': 7, 'c': 6, 'd': 1, 'e': 1}
  assert [eval_count(n, 20) for n in (1, 2, 5, 32)] == [0, 1, 1, 6]


def test_the_split_is_deterministic_and_stable_when_a_photo_is_added():
  items = _items({'a': 50, 'b': 50})
  first = plan_splits(items, 20).splits
  assert plan_splits(list(reversed(items)), 20).splits == first
  added = items + [Hashed('a/new.jpg', 'a', None, content_digest(b'new photo'))]
  moved = [k for k, s in plan_splits(added, 20).splits.items() if k in first and first[k] != s]
  assert len(moved) <= 1


def test_identical_content_shares_one_split_and_is_grouped():
  items = _items({'a': 10, 'b': 10})
  twin = items[0].digest
  items += [Hashed('a/copy.jpg', 'a', None, twin), Hashed('b/same.jpg', 'b', None, twin),
            Hashed('b/x.jpg', 'b', None, 'f' * 32), Hashed('b/y.jpg', 'b', None, 'f' * 32)]
  plan = plan_splits(items, 30)
  assert plan.splits['a/0.jpg'] == plan.splits['a/copy.jpg'] == plan.splits['b/same.jpg'] == 'train'
  assert plan.splits['b/x.jpg'] == plan.splits['b/y.jpg']
  assert plan.duplicates == [['a/0.jpg', 'a/copy.jpg', 'b/same.jpg'], ['b/x.jpg', 'b/y.jpg']]


def test_a_presplit_layout_keeps_its_split_and_reports_leaks():
  items = [Hashed('train/a/1.jpg', 'a', 'train', 'd1'), Hashed('validation/a/9.jpg', 'a', 'eval', 'd1'),
           Hashed('train/a/2.jpg', 'a', 'train', 'd2')]
  plan = plan_splits(items, 20)
  assert plan.splits == {} and plan.split_of('validation/a/9.jpg', 'eval') == 'eval'
  assert plan.leaks == [['train/a/1.jpg', 'validation/a/9.jpg']]
