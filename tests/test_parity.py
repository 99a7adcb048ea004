"""bench.parity's rules on synthetic results: a mean difference within the seed range is parity, one beyond it
is not; verdicts compare by majority, and a run whose seeds disagree is undecided rather than a failure."""

from __future__ import annotations

from bench.parity import compare, majority


def seeds(test: list[float], verdicts: list[str]) -> list[dict[str, dict]]:
    return [
        {
            "r": {
                "train_accuracy_inference": 0.99,
                "val_accuracy_inference": 0.8,
                "test_accuracy": t,
                "gap": 0.19,
                "verdict": v,
            }
        }
        for t, v in zip(test, verdicts, strict=True)
    ]


def test_majority_needs_more_than_half_of_the_seeds() -> None:
    assert majority(["good fit", "good fit", "true overfit"]) == "good fit"
    assert majority(["good fit", "still learning", "true overfit"]) is None


def test_a_difference_within_the_seed_range_is_parity() -> None:
    table, holds = compare(
        seeds([0.80, 0.82, 0.84], ["good fit"] * 3), seeds([0.81, 0.83, 0.83], ["good fit"] * 3), ["r"]
    )
    assert holds and "| r | test_accuracy | 0.800 / 0.820 / 0.840 | 0.820 | 0.040 |" in table


def test_a_difference_beyond_the_seed_range_fails() -> None:
    table, holds = compare(
        seeds([0.80, 0.81, 0.80], ["good fit"] * 3), seeds([0.85, 0.86, 0.85], ["good fit"] * 3), ["r"]
    )
    assert not holds and "+0.050 | **no** |" in table


def test_verdicts_compare_by_majority_and_disagreeing_seeds_are_undecided() -> None:
    same = [0.8, 0.8, 0.8]
    _, holds = compare(seeds(same, ["good fit"] * 3), seeds(same, ["true overfit", "true overfit", "good fit"]), ["r"])
    assert not holds
    table, holds = compare(
        seeds(same, ["good fit"] * 3), seeds(same, ["good fit", "true overfit", "still learning"]), ["r"]
    )
    assert holds and "undecided: no majority" in table
