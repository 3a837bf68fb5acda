"""The task interface's metric averaging: padding and per-metric weights, against closed forms."""
import math

import numpy as np

from talkingmem.task import valid_weighted_means


def test_padding_is_left_out_of_the_means():
  batches = [{"l1": np.array([1.0, 3.0]), "valid": np.array([True, False])},
             {"l1": np.array([2.0, 4.0])}]
  means, count = valid_weighted_means(batches)
  assert count == 3 and means["l1"] == (1.0 + 2.0 + 4.0) / 3


def test_per_metric_weights_average_only_the_examples_that_have_the_metric():
  batches = [{"l1": np.array([1.0, 3.0, 5.0]), "l1_masked": np.array([0.5, 0.0, 0.7]),
              "valid": np.array([True, True, False]),
              "weights": {"l1_masked": np.array([True, False, True])}},
             {"l1": np.array([2.0]), "l1_masked": np.array([0.9]),
              "weights": {"l1_masked": np.array([True])}}]
  means, count = valid_weighted_means(batches)
  assert count == 3 and means["l1"] == 2.0
  # Example 2 has no mask pixels, example 3 is padding: the masked mean is over examples 1 and 4.
  assert math.isclose(means["l1_masked"], (0.5 + 0.9) / 2)


def test_a_weighted_metric_with_no_weight_anywhere_is_nan():
  means, _ = valid_weighted_means([{"l1": np.array([1.0]), "l1_masked": np.array([0.0]),
                                    "weights": {"l1_masked": np.array([False])}}])
  assert means["l1"] == 1.0 and math.isnan(means["l1_masked"])
