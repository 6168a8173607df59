import pytest
import torch

from oreal_core.algo.balance import REFERENCE_BANDS, difficulty_balance


def test_reference_bands():
    rates = torch.tensor([0.0, 0.1, 0.2, 0.39, 0.4, 0.59, 0.6, 0.79, 0.8, 0.95, 1.0])
    counts = difficulty_balance(rates, REFERENCE_BANDS)
    assert counts.tolist() == [6, 6, 4, 4, 4, 4, 2, 2, 0, 0, 0]


def test_top_band_to_one_is_inclusive():
    counts = difficulty_balance(torch.tensor([0.9, 1.0]), [(0.0, 0.8, 1), (0.8, 1.0, 3)])
    assert counts.tolist() == [3, 3]


@pytest.mark.parametrize(
    "rates, bands, message",
    [
        (torch.tensor([0.5, float("nan")]), REFERENCE_BANDS, "pass_rates: 1 non-finite"),
        (torch.tensor([1.5]), REFERENCE_BANDS, "pass_rates: values must lie in"),
        (torch.tensor([[0.5]]), REFERENCE_BANDS, "pass_rates: expected 1 dimensions"),
        (torch.tensor([0.5]), [(0.0, 0.6, 1), (0.5, 1.0, 1)], "bands:"),
        (torch.tensor([0.5]), [(0.0, 0.6, -1)], "bands:"),
    ],
)
def test_bad_input(rates, bands, message):
    with pytest.raises(ValueError, match=message):
        difficulty_balance(rates, bands)
